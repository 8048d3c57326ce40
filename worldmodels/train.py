"""One training loop and one checkpoint format for every model (the VAE and the MDN-RNN).

A model takes part by having ``loss(batch) -> (loss, logs)`` and ``model_args`` (the
constructor arguments). A checkpoint is one self-describing dict,

    {"model", "optimizer", "scheduler", "model_class", "model_args", "progress", "config",
     "rng"}

written atomically every ``checkpoint_every`` steps and at the end of every epoch, so a
run killed at any point resumes at its last checkpoint: same epoch, same batch, same
optimiser state. Checkpoints are read with ``weights_only=True`` (no unpickling).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from worldmodels.files import atomic_path
from worldmodels.metrics import MetricsLog
from worldmodels.runtime import autocast


def save_checkpoint(path: str | os.PathLike, model, optimizer, scheduler, progress, config):
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "model_class": type(model).__name__,
        "model_args": model.model_args,
        "progress": dict(progress),
        "config": config,
        "rng": {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: str | os.PathLike, model_class: str, model_args: dict | None = None):
    """Read a checkpoint; raise ValueError if it holds another model or other sizes."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding arbitrary objects
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or "model_args" not in ckpt:
        raise ValueError(f"{path} is not a worldmodels checkpoint")
    if ckpt.get("model_class") != model_class:
        raise ValueError(f"{path} holds a {ckpt.get('model_class')}, expected a {model_class}")
    for key, value in (model_args or {}).items():
        found = ckpt["model_args"].get(key)
        if found != value:
            raise ValueError(
                f"{path} was made with {key}={found!r}, this run has {key}={value!r}; "
                "use another run directory or --force to retrain"
            )
    return ckpt


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return type(batch)(to_device(v, device) for v in batch)


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable],
    *,
    epochs: int,
    ckpt_path: str | os.PathLike,
    log: MetricsLog,
    config: dict,
    device: torch.device,
    precision: str = "float32",
    checkpoint_every: int = 500,
    max_steps: int | None = None,
    scheduler=None,
    grad_clip: float | None = None,
    validate: Callable[[], dict[str, float]] | None = None,
    desc: str = "train",
) -> dict:
    """Train ``model`` for ``epochs`` passes over ``batches(epoch)``, resuming if it can.

    Args:
        batches: ``batches(epoch)`` yields the batches of that epoch, the same ones in the
            same order every time it is called with the same epoch (needed to resume).
        max_steps: Stop after this many optimiser steps in all, even mid-epoch.
        grad_clip: Clip every gradient element to [-grad_clip, grad_clip] (the original).
        validate: Called at every checkpoint and at the end; its numbers are logged.

    Returns:
        The final progress dict (step, epoch, batch, done, and the last validation logs).

    Raises:
        FloatingPointError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    ckpt_path = Path(ckpt_path)
    progress = {"step": 0, "epoch": 0, "batch": 0, "done": False}
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, type(model).__name__, model.model_args)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        progress = ckpt["progress"]
        _restore_rng(ckpt["rng"])
    if progress["done"]:
        return progress

    def checkpoint() -> None:
        if validate is not None:
            progress["val"] = validate()
            log.log(progress["val"], progress["step"], split="val")
            model.train()
        progress["saved_step"] = progress["step"]
        save_checkpoint(ckpt_path, model, optimizer, scheduler, progress, config)

    model.train()
    bar = tqdm(
        initial=progress["step"], total=max_steps, desc=desc, unit="step", dynamic_ncols=True
    )
    with bar:
        while progress["epoch"] < epochs and not _reached(progress, max_steps):
            for i, batch in enumerate(batches(progress["epoch"])):
                if i < progress["batch"]:
                    continue  # already trained on before the restart
                logs = _step(model, optimizer, batch, device, precision, grad_clip, progress)
                if scheduler is not None:
                    scheduler.step()
                progress["step"] += 1
                progress["batch"] = i + 1
                log.log(logs, progress["step"])
                bar.update(1)
                bar.set_postfix(epoch=progress["epoch"], loss=f"{logs['loss']:.4g}")
                if _reached(progress, max_steps):
                    break
                if progress["step"] % checkpoint_every == 0:
                    checkpoint()
            else:
                progress["epoch"] += 1
                progress["batch"] = 0
                if progress["epoch"] < epochs:
                    checkpoint()
    progress["done"] = True
    checkpoint()
    return progress


def _restore_rng(rng: dict) -> None:
    """Continue the random stream (e.g. the VAE's sampling noise) where the run left it."""
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _reached(progress: dict, max_steps: int | None) -> bool:
    return max_steps is not None and progress["step"] >= max_steps


def _step(model, optimizer, batch, device, precision, grad_clip, progress) -> dict:
    with autocast(device, precision):
        loss, logs = model.loss(to_device(batch, device))
    if not math.isfinite(logs["loss"]):
        saved = progress.get("saved_step")
        kept = (
            "no checkpoint was written yet"
            if saved is None
            else (f"the last good checkpoint, of step {saved}, is kept")
        )
        raise FloatingPointError(
            f"loss is {logs['loss']} at step {progress['step'] + 1}; training stopped, {kept}"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    return logs
