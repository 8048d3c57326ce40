"""Stages ``vae`` (train V on the collected frames) and ``encode`` (frames -> latents).

Run-directory files:
    rollouts/<i>.npz         input (stage collect)
    vae/ckpt.pt              the trained ConvVAE (a ``worldmodels.train`` checkpoint)
    vae/reconstructions.png  held-out frames (top) above their reconstructions (bottom)
    latents/<i>.npz          per episode: mu, logvar float32 [T, z], and the episode's
                             action, reward, terminated, truncated, uncompressed so the
                             MDN-RNN stage loads them quickly; latents/meta.json records z
    metrics.jsonl            vae/train/*, vae/val/* lines

Frames are streamed from disk (``rollouts.FrameStream``), never all in memory. Every
episode whose index is a multiple of ``val_every`` is held out for validation.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from worldmodels.artifacts import load_vae
from worldmodels.files import atomic_path, write_json
from worldmodels.metrics import MetricsLog
from worldmodels.rollouts import (
    FrameStream,
    episode_length,
    episode_paths,
    held_out,
    read_episode,
)
from worldmodels.runtime import (
    autocast,
    choose_precision,
    configure_cpu,
    pick_device,
    seed_everything,
)
from worldmodels.train import fit
from worldmodels.vae import ConvVAE, to_input


@dataclass
class VAEConfig:
    """Settings of V's training (defaults: the paper's)."""

    z_size: int = 64
    """Latent size: 64 for Doom, 32 for CarRacing in the paper."""
    kl_tolerance: float = 0.5
    """Free bits: the KL is floored at kl_tolerance * z_size nats per frame."""
    batch_size: int = 100
    lr: float = 1e-4
    epochs: int = 1
    max_steps: int | None = None
    """Stop after this many steps even mid-epoch (None: run all epochs)."""
    buffer_frames: int = 20_000
    """Shuffle buffer of the frame stream (frames; 20,000 is 245 MB)."""
    val_every: int = 20
    """Hold out every val_every-th episode (by index) for validation."""
    val_frames: int = 2_000
    checkpoint_every: int = 500
    precision: str = "auto"
    """float32, bfloat16, or auto: measure both on this machine, keep the faster."""
    device: str = "auto"
    seed: int = 0


@dataclass
class EncodeConfig:
    """Settings of the encoding of every episode through V."""

    batch_size: int = 1_000
    precision: str = "auto"
    device: str = "auto"


def split_episodes(paths: list[Path], val_every: int) -> tuple[list[Path], list[Path]]:
    """(train, val): episodes whose index is a multiple of ``val_every`` are held out."""
    val = [p for p in paths if held_out(int(p.stem), val_every)]
    return [p for p in paths if not held_out(int(p.stem), val_every)], val


def train_vae(config: VAEConfig, run_dir: str | os.PathLike) -> dict:
    """Train (or resume training) V; return the final progress with validation numbers."""
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
    save_reconstructions(model, val_batches[0][:8], run_dir / "vae" / "reconstructions.png")
    return progress


def _training_episodes(rollouts: Path, config: VAEConfig) -> tuple[list[Path], list[Path]]:
    paths = episode_paths(rollouts)
    if not paths:
        raise FileNotFoundError(f"no episodes found in {rollouts} (looked for <index>.npz)")
    train, val = split_episodes(paths, config.val_every)
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
    recon = model.decode(mu).permute(0, 2, 3, 1).mul(255).round().byte().cpu().numpy()
    grid = np.concatenate([np.concatenate(list(frames), 1), np.concatenate(list(recon), 1)], 0)
    grid = cv2.resize(grid, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    with atomic_path(path) as tmp:
        ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        tmp.write_bytes(png.tobytes())


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
        with atomic_path(out / path.name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **latents)
    return {"episodes": len(paths) - len(skipped), "encoded": len(todo) - len(skipped),
            "skipped": skipped, "precision": precision}  # fmt: skip


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
