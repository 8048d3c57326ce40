"""Stage ``vae``: train V, the convolutional VAE, on the collected frames (paper Sec. 2.1).

Reads rollouts/<i>.npz (stage collect). Writes vae/ckpt.pt (a ``worldmodels.train``
checkpoint), vae/reconstructions.png (held-out frames above their reconstructions) and
vae/results.json (held-out loss terms; for Doom also how much of the close fireballs V
draws back), and metrics.jsonl lines vae/train/*, vae/val/*.

Frames are streamed from disk (``rollouts.FrameStream``), never all in memory. Every
episode whose index is a multiple of ``val_every`` is held out for validation.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch

from worldmodels.artifacts import read_results, run_game
from worldmodels.envs import FRAME_SHAPE, get_game
from worldmodels.files import atomic_path, write_json
from worldmodels.metrics import MetricsLog
from worldmodels.rollouts import (
    FrameStream,
    episode_length,
    episode_paths,
    read_episode,
    split_held_out,
)
from worldmodels.runtime import (
    autocast,
    choose_precision,
    configure_cpu,
    pick_device,
    seed_everything,
)
from worldmodels.train import fit
from worldmodels.vae import ConvVAE, to_frames, to_input


@dataclass
class VAEConfig:
    """Settings of V's training (defaults: the paper's)."""

    limits: ClassVar[dict[str, str]] = {
        "z_size": ">= 1", "kl_tolerance": ">= 0", "batch_size": ">= 1", "lr": "> 0",
        "epochs": ">= 1", "max_steps": ">= 1", "buffer_frames": ">= 1", "val_every": ">= 2",
        "val_frames": ">= 1", "checkpoint_every": ">= 1", "precision": "auto float32 bfloat16",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    z_size: int = 64
    """Latent size: 64 for Doom, 32 for CarRacing in the paper."""
    kl_tolerance: float = 0.5
    """Free bits: the KL is floored at kl_tolerance * z_size nats per frame."""
    batch_size: int = 100
    """Frames per step (the paper's 100)."""
    lr: float = 1e-4
    """Adam's learning rate (the paper's 1e-4)."""
    epochs: int = 1
    """Passes over the training frames."""
    max_steps: int | None = None
    """Stop after this many steps even mid-epoch (None: run all epochs)."""
    buffer_frames: int = 20_000
    """Shuffle buffer of the frame stream (frames; 20,000 is 245 MB)."""
    val_every: int = 20
    """Hold out every val_every-th episode (by index) for validation."""
    val_frames: int = 2_000
    """Held-out frames V is validated on at every checkpoint."""
    checkpoint_every: int = 500
    """Steps between checkpoints (and validations)."""
    precision: str = "auto"
    """float32, bfloat16, or auto: measure both on this machine, keep the faster."""
    device: str = "auto"
    """auto (CUDA if present, else CPU), or a torch device such as cuda:1."""
    seed: int = 0
    """Seed of the weights, the frame order and the sampling noise."""


def train_vae(config: VAEConfig, run_dir: str | os.PathLike) -> dict:
    """Train (or resume training) V; write vae/results.json and return it."""
    run_dir = Path(run_dir)
    train_paths, val_paths = _training_episodes(run_dir / "rollouts", config)
    device = pick_device(config.device)
    seed_everything(config.seed)
    configure_cpu()
    model = ConvVAE(config.z_size, config.kl_tolerance).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = FrameStream(train_paths, config.batch_size, config.buffer_frames, config.seed)
    val_batches = _fixed_batches(val_paths or train_paths, config)
    probe = torch.from_numpy(val_batches[0]).to(device)
    precision = choose_precision(config.precision, device, lambda: model.loss(probe)[0].backward())
    print(f"vae: {len(train_paths)} training / {len(val_paths)} held-out episodes, "
          f"{device}, {precision}")  # fmt: skip
    progress = fit(
        model, optimizer, lambda epoch: map(torch.from_numpy, stream.batches(epoch)),
        epochs=config.epochs, max_steps=config.max_steps, ckpt_path=run_dir / "vae" / "ckpt.pt",
        log=MetricsLog(run_dir / "metrics.jsonl", "vae"), config=asdict(config), device=device,
        precision=precision, checkpoint_every=config.checkpoint_every, desc="vae",
        validate=lambda: validate_vae(model, val_batches, device, precision),
    )  # fmt: skip
    results = {**progress["val"], "steps": progress["step"], "precision": precision}
    shown = val_batches[0][:8]
    danger = get_game(run_game(run_dir)).danger
    if danger is not None:
        frames = danger_frames(val_paths or train_paths, danger)
        if len(frames):
            results["danger"] = danger_recall(model, frames, danger)
            shown = np.concatenate([shown[:4], frames[:: max(len(frames) // 4, 1)][:4]])
            print(f"vae: {results['danger']['recall']:.2f} of the danger pixels (fireballs) of "
                  f"{len(frames)} held-out frames are drawn back")  # fmt: skip
    save_reconstructions(model, shown, run_dir / "vae" / "reconstructions.png")
    write_json(run_dir / "vae" / "results.json", results)
    return results


def danger_frames(paths: list[Path], danger, min_pixels: int = 50, n: int = 500) -> np.ndarray:
    """Up to ``n`` frames of the episodes ``paths`` with at least ``min_pixels`` pixels of
    ``danger`` (a close fireball in Doom), in episode order."""
    found, count = [], 0
    for path in paths:
        episode = read_episode(path)
        if episode is None:
            continue
        obs = episode["obs"]
        found.append(obs[danger(obs).reshape(len(obs), -1).sum(1) >= min_pixels])
        count += len(found[-1])
        if count >= n:
            break
    return np.concatenate(found)[:n] if found else np.zeros((0, *FRAME_SHAPE), np.uint8)


@torch.no_grad()
def danger_recall(model: ConvVAE, frames: np.ndarray, danger) -> dict:
    """Of the pixels that show danger in ``frames``, the fraction that still does in V's
    reconstruction (decoded mu), and the fraction of reconstructed danger that is real."""
    model.eval()
    device = next(model.parameters()).device
    mu, _ = model.encode(to_input(torch.from_numpy(frames).to(device)))
    recon = to_frames(model.decode(mu))
    real, drawn = danger(frames), danger(recon)
    both = int((real & drawn).sum())
    return {"recall": both / max(int(real.sum()), 1), "precision": both / max(int(drawn.sum()), 1),
            "frames": len(frames)}  # fmt: skip


def _training_episodes(rollouts: Path, config: VAEConfig) -> tuple[list[Path], list[Path]]:
    paths = episode_paths(rollouts)
    if not paths:
        raise FileNotFoundError(f"no episodes found in {rollouts} (looked for <index>.npz)")
    train, val = split_held_out(paths, config.val_every, index=lambda p: int(p.stem))
    frames = sum(episode_length(p) for p in train)
    if frames < config.batch_size:
        raise ValueError(
            f"{rollouts}: {len(train)} training episodes with {frames} frames in all, "
            f"fewer than one batch of {config.batch_size}"
        )
    return train, val


def _fixed_batches(paths: list[Path], config: VAEConfig) -> list[np.ndarray]:
    """The same validation frames every time: the first ``val_frames`` of a fixed order."""
    stream = FrameStream(paths, config.batch_size, config.buffer_frames, seed=config.seed)
    batches, n = [], 0
    for batch in stream.batches(0):
        batches.append(batch)
        n += len(batch)
        if n >= config.val_frames:
            break
    return batches


@torch.no_grad()
def validate_vae(model: ConvVAE, batches: list[np.ndarray], device, precision: str) -> dict:
    """Mean loss terms over fixed frames, with fixed sampling noise."""
    model.eval()
    totals, n = {}, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for batch in batches:
            with autocast(device, precision):
                _, logs = model.loss(torch.from_numpy(batch).to(device))
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value * len(batch)
            n += len(batch)
    return {key: value / n for key, value in totals.items()}


@torch.no_grad()
def save_reconstructions(model: ConvVAE, frames: np.ndarray, path: Path) -> None:
    """PNG: frames on top, their reconstructions (decoded mu) below, scaled x3."""
    model.eval()
    device = next(model.parameters()).device
    mu, _ = model.encode(to_input(torch.from_numpy(frames).to(device)))
    recon = to_frames(model.decode(mu))
    grid = np.concatenate([np.concatenate(list(frames), 1), np.concatenate(list(recon), 1)], 0)
    grid = cv2.resize(grid, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    with atomic_path(path) as tmp:
        ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        tmp.write_bytes(png.tobytes())


def summary(run_dir: Path) -> list[str]:
    """V's held-out loss and how much of the danger it draws back, as Markdown."""
    r = read_results(run_dir, "vae")
    if not r:
        return []
    line = f"held-out loss {r['loss']:.1f} (squared error {r['r_loss']:.1f}, KL {r['kl']:.1f})"
    if "danger" in r:
        d = r["danger"]
        line += (f"; of the fireball pixels in {d['frames']} held-out frames with a close "
                 f"fireball, {d['recall']:.0%} are drawn back")  # fmt: skip
    return ["## V", "", line, "", "![V: frames and reconstructions](vae/reconstructions.png)"]
