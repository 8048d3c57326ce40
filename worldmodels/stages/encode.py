"""Stage ``encode``: every collected episode through V, frames -> latents.

Reads rollouts/<i>.npz and vae/ckpt.pt. Writes latents/<i>.npz per episode: mu and
logvar float32 [T, z], and the episode's action, reward, terminated and truncated,
uncompressed so that M's stage loads them quickly; latents/meta.json records z, and
latents/results.json the counts and the precision used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from worldmodels.artifacts import load_vae
from worldmodels.files import atomic_path, write_json
from worldmodels.rollouts import episode_paths, read_episode
from worldmodels.runtime import autocast, choose_precision, configure_cpu, pick_device
from worldmodels.vae import ConvVAE, to_input


@dataclass
class EncodeConfig:
    """Settings of the encoding of every episode through V."""

    limits: ClassVar[dict[str, str]] = {
        "batch_size": ">= 1", "precision": "auto float32 bfloat16",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    batch_size: int = 1_000
    """Frames encoded at once."""
    precision: str = "auto"
    """float32, bfloat16, or auto (measure both, keep the faster)."""
    device: str = "auto"
    """auto (CUDA if present, else CPU), or a torch device."""


def encode(config: EncodeConfig, run_dir: str | os.PathLike) -> dict:
    """Write latents/<i>.npz for every readable episode that has none yet."""
    run_dir = Path(run_dir)
    device = pick_device(config.device)
    configure_cpu()
    model = load_vae(run_dir, device)
    out = run_dir / "latents"
    _claim_latents(out, model.z_size)
    paths = episode_paths(run_dir / "rollouts")
    todo = [p for p in paths if not (out / p.name).exists()]
    sample = torch.zeros(min(config.batch_size, 256), 3, 64, 64, device=device)
    with torch.no_grad():
        precision = choose_precision(config.precision, device, lambda: model.encode(sample))
    skipped = []
    for path in todo:
        episode = read_episode(path)
        if episode is None:
            skipped.append(path.name)
            continue
        mu, logvar = encode_frames(model, episode["obs"], config.batch_size, precision)
        latents = {"mu": mu, "logvar": logvar}
        latents.update({k: episode[k] for k in ("action", "reward", "terminated", "truncated")})
        write_latents(out / path.name, latents)
    results = {"episodes": len(paths) - len(skipped), "encoded": len(todo) - len(skipped),
               "skipped": skipped, "precision": precision}  # fmt: skip
    write_json(out / "results.json", results)
    return results


def write_latents(path: Path, latents: dict[str, np.ndarray]) -> None:
    """Write one episode's latents file atomically, uncompressed (M's stage loads them)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **latents)


@torch.no_grad()
def encode_frames(model: ConvVAE, obs: np.ndarray, batch_size: int, precision: str):
    """uint8 frames ``[T, 64, 64, 3]`` -> (mu, logvar), float32 ``[T, z]`` numpy arrays."""
    device = next(model.parameters()).device
    mus, logvars = [], []
    for start in range(0, len(obs), batch_size):
        x = to_input(torch.from_numpy(obs[start : start + batch_size]).to(device))
        with autocast(device, precision):
            mu, logvar = model.encode(x)
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def _claim_latents(out: Path, z_size: int) -> None:
    """Refuse latents of another z size; record ours."""
    meta = out / "meta.json"
    if meta.exists():
        found = json.loads(meta.read_text()).get("z_size")
        if found != z_size:
            raise ValueError(
                f"{out} holds latents with z_size={found}, the VAE has z_size={z_size}; "
                "rerun encode with --force"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(meta, {"z_size": z_size})


def summary(run_dir: Path) -> list[str]:
    """Nothing to report beyond the stage's status."""
    return []
