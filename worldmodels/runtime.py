"""Device, seeding and numeric precision, chosen in one place for every stage."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch

PRECISIONS = ("auto", "float32", "bfloat16")


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA if present, else CPU; or an explicit torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_workers(workers: int | None) -> int:
    """Worker processes: ``None`` means one per core this process may use."""
    if workers is not None:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_cpu() -> None:
    """Flush denormals to zero: tiny Adam moments under bf16 otherwise slow steps ~10%."""
    torch.set_flush_denormal(True)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` ("float32" turns it off)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
    )


def choose_precision(setting: str, device: torch.device, work: Callable[[], object]) -> str:
    """Resolve ``"auto"`` to whichever of float32 / bfloat16 runs ``work`` faster.

    On CUDA with bf16 support that is bf16. On a CPU it depends on the chip (bf16 units
    or not), so it is measured: ``work()`` (e.g. one forward + backward pass) is timed
    under each precision, the faster wins. Explicit settings are returned as they are.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    seconds = {p: _best_time(work, device, p) for p in ("float32", "bfloat16")}
    return min(seconds, key=seconds.get)


def _best_time(work: Callable[[], object], device, precision: str, repeats: int = 3) -> float:
    best = float("inf")
    for i in range(repeats + 1):  # the first pass builds kernels; not timed
        start = time.perf_counter()
        with autocast(device, precision):
            work()
        if i:
            best = min(best, time.perf_counter() - start)
    return best
