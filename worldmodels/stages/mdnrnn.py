"""Stage ``mdnrnn``: train M on the encoded episodes (paper Sec. 2.2, Appendix A.2).

Reads latents/<i>.npz (stage encode). Writes mdnrnn/ckpt.pt and mdnrnn/results.json
(validation NLL per dimension against the z_{t+1} = z_t baseline, done precision and
recall), metrics.jsonl lines mdnrnn/train/* and mdnrnn/val/*.

Every epoch cuts each episode into windows of ``seq_len`` steps at a new random offset,
so every transition is seen once per epoch; windows are shuffled, batched and padded to
the longest in the batch, and the padding is masked out of every loss term. z is drawn
afresh from the stored mu / log-variance for every batch, as the original. After training,
the done head is refit on the frozen LSTM's states with early stopping on the held-out
episodes (``refit_done_head``), because trained jointly it overfits the episode ends.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from worldmodels.artifacts import load_latents, read_results, run_game
from worldmodels.envs import get_game
from worldmodels.files import write_json
from worldmodels.mdnrnn import MDNRNN
from worldmodels.metrics import MetricsLog
from worldmodels.rollouts import split_held_out
from worldmodels.runtime import (
    autocast,
    choose_precision,
    configure_cpu,
    pick_device,
    seed_everything,
)
from worldmodels.train import fit, save_checkpoint, to_device


@dataclass
class MDNRNNConfig:
    """Settings of M and its training (defaults: the paper's Doom setup)."""

    limits: ClassVar[dict[str, str]] = {
        "hidden_size": ">= 1", "n_components": ">= 1", "done_pos_weight": "> 0",
        "done_refit_steps": ">= 0", "seq_len": ">= 2", "batch_size": ">= 1", "lr": "> 0",
        "min_lr": ">= 0", "lr_decay": "> 0", "grad_clip": "> 0", "epochs": ">= 1",
        "max_steps": ">= 1", "val_every": ">= 2", "checkpoint_every": ">= 1",
        "precision": "auto float32 bfloat16", "dropout": ">= 0, < 1",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    hidden_size: int = 512
    """LSTM units: 512 for Doom, 256 for CarRacing in the paper."""
    n_components: int = 5
    """Gaussians per latent dimension (the paper's 5)."""
    done_pos_weight: float = 10.0
    """Weight of episode-ending steps in the done loss (the original's 10)."""
    done_detached: bool = False
    """Keep the done loss out of the LSTM's gradient (see MDNRNN)."""
    done_refit_steps: int = 400
    """After training, fit a fresh done head on the frozen LSTM's states for this many
    steps (of 8,192 states) and keep whichever head, joint or refit, has the lowest
    held-out done loss (see ``refit_done_head``; 0: keep the jointly trained head)."""
    seq_len: int = 500
    """Steps per training window (the paper's 500 for Doom, 999 for CarRacing)."""
    batch_size: int = 100
    """Windows per step."""
    lr: float = 1e-3
    """Adam's initial learning rate."""
    min_lr: float = 1e-5
    """The floor the learning rate decays to."""
    lr_decay: float = 0.99999
    """lr(step) = min_lr + (lr - min_lr) * lr_decay**step, as the original (1.0: constant)."""
    grad_clip: float = 1.0
    """Every gradient element clipped to [-grad_clip, grad_clip], as the original."""
    epochs: int = 20
    """Passes over the training episodes."""
    max_steps: int | None = None
    """Stop after this many steps even mid-epoch (None: run all epochs)."""
    val_every: int = 20
    """Hold out every val_every-th episode (by index), the same ones as the VAE."""
    checkpoint_every: int = 200
    """Steps between checkpoints (and validations)."""
    precision: str = "auto"
    """float32, bfloat16, or auto (measure both, keep the faster)."""
    device: str = "auto"
    """auto (CUDA if present, else CPU), or a torch device."""
    dropout: float = 0.0
    """Dropout on the LSTM's output before the heads, in training and in every dream
    of this M (a fresh mask per step; 0: none, the paper; see MDNRNN)."""
    seed: int = 0
    """Seed of the weights, the windows and the z sampling."""


class SequenceBatches:
    """Padded, masked batches of windows of encoded episodes (see the module docstring)."""

    def __init__(self, episodes: list[dict], seq_len: int, batch_size: int, seed: int):
        self.episodes, self.seq_len, self.batch_size, self.seed = (
            episodes,
            seq_len,
            batch_size,
            seed,
        )

    def windows(self, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """(episode, start, end) covering every step of every episode once."""
        out = []
        for e, episode in enumerate(self.episodes):
            length = len(episode["mu"])
            offset = int(rng.integers(0, self.seq_len)) if length > self.seq_len else 0
            bounds = [0, *range(offset or self.seq_len, length, self.seq_len), length]
            out += [(e, s, t) for s, t in zip(bounds[:-1], bounds[1:], strict=True) if t > s]
        return out

    def batches(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        windows = self.windows(rng)
        order = rng.permutation(len(windows))
        for start in range(0, len(order), self.batch_size):
            chosen = [windows[i] for i in order[start : start + self.batch_size]]
            yield self.collate(chosen, rng)

    def collate(self, windows, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        n, width = len(windows), max(t - s for _, s, t in windows)
        z_size = self.episodes[0]["mu"].shape[1]
        action_dim = self.episodes[0]["action"].shape[1]
        out = {
            "z": np.zeros((n, width, z_size), np.float32),
            "z_next": np.zeros((n, width, z_size), np.float32),
            "action": np.zeros((n, width, action_dim), np.float32),
            "restart": np.zeros((n, width), np.float32),
            "done": np.zeros((n, width), np.float32),
            "reward": np.zeros((n, width), np.float32),
            "mask": np.zeros((n, width), bool),
            "z_mask": np.zeros((n, width), bool),
        }
        for row, (e, s, t) in enumerate(windows):
            episode, k = self.episodes[e], t - s
            stop = min(t + 1, len(episode["mu"]))  # one more step for the last target
            mu, logvar = episode["mu"][s:stop], episode["logvar"][s:stop]
            z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape, dtype=np.float32)
            out["z"][row, :k] = z[:k]
            out["z_next"][row, : len(z) - 1] = z[1:]
            out["z_mask"][row, : len(z) - 1] = True
            out["mask"][row, :k] = True
            out["action"][row, :k] = episode["action"][s:t]
            out["done"][row, :k] = episode["terminated"][s:t]
            out["reward"][row, :k] = episode["reward"][s:t]
            out["restart"][row, 0] = float(s == 0)
        return {key: torch.from_numpy(value) for key, value in out.items()}


def build_mdnrnn(config: MDNRNNConfig, game_name: str, z_size: int) -> MDNRNN:
    game = get_game(game_name)
    return MDNRNN(
        z_size=z_size, action_dim=game.action_dim, hidden_size=config.hidden_size,
        n_components=config.n_components, restart_flag=game.restart_flag,
        predict_done=True, predict_reward=not game.survival,
        done_pos_weight=config.done_pos_weight, done_detached=config.done_detached,
        dropout=config.dropout,
    )  # fmt: skip


def train_mdnrnn(config: MDNRNNConfig, run_dir: str | os.PathLike) -> dict:
    """Train (or resume) M; write mdnrnn/results.json and return it."""
    run_dir = Path(run_dir)
    episodes, z_size = load_latents(run_dir)
    game_name = run_game(run_dir)
    train, val = split_held_out(episodes, config.val_every)
    if not train or not val:
        raise ValueError(
            f"{run_dir / 'latents'}: {len(train)} training and {len(val)} held-out episodes; "
            f"need at least one of each (val_every={config.val_every})"
        )
    device = pick_device(config.device)
    seed_everything(config.seed)
    configure_cpu()
    model = build_mdnrnn(config, game_name, z_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(config, step))
    batches = SequenceBatches(train, config.seq_len, config.batch_size, config.seed)
    val_batches = list(SequenceBatches(val, config.seq_len, config.batch_size, 0).batches(0))
    probe = to_device(val_batches[0], device)
    precision = choose_precision(config.precision, device, lambda: model.loss(probe)[0].backward())
    print(f"mdnrnn: {len(train)} training / {len(val)} held-out episodes, {device}, {precision}")
    log = MetricsLog(run_dir / "metrics.jsonl", "mdnrnn")
    ckpt_path, record = run_dir / "mdnrnn" / "ckpt.pt", {**asdict(config), "game": game_name}
    progress = fit(
        model,
        optimizer,
        batches.batches,
        epochs=config.epochs,
        max_steps=config.max_steps,
        ckpt_path=ckpt_path,
        log=log,
        config=record,
        device=device,
        precision=precision,
        checkpoint_every=config.checkpoint_every,
        scheduler=scheduler,
        grad_clip=config.grad_clip,
        validate=lambda: validate_mdnrnn(model, val_batches, device, precision),
        desc="mdnrnn",
    )
    if config.done_refit_steps and model.done is not None and "done_refit" not in progress:
        progress["done_refit"] = refit_done_head(
            model, batches.batches(0), val_batches, config.done_refit_steps, device, precision,
            log=log, seed=config.seed,
        )  # fmt: skip
        progress["val"] = validate_mdnrnn(model, val_batches, device, precision)
        save_checkpoint(ckpt_path, model, optimizer, scheduler, progress, record)
    results = dict(progress["val"], steps=progress["step"], precision=precision)
    if "done_refit" in progress:
        results["done_refit"] = progress["done_refit"]
    results["baseline_z_nll_per_dim"] = baseline_nll(batches.batches(0), val_batches)
    write_json(run_dir / "mdnrnn" / "results.json", results)
    print(
        f"mdnrnn: held-out NLL per dim {results['z_nll_per_dim']:.3f} nats, "
        f"z_(t+1) = z_t baseline {results['baseline_z_nll_per_dim']:.3f}; done precision "
        f"{results['done_precision']:.2f}, recall {results['done_recall']:.2f}"
    )
    if "done_refit" in results:
        r = results["done_refit"]
        kept = "the joint one" if r["step"] == 0 else f"refit, step {r['step']}"
        print(
            f"mdnrnn: done head kept: {kept} (held-out done loss joint "
            f"{r['joint_val_done_loss']:.4f}, kept {r['val_done_loss']:.4f})"
        )
    return results


def _lr_factor(config: MDNRNNConfig, step: int) -> float:
    """lr(step) / lr, for lr(step) = min_lr + (lr - min_lr) * lr_decay**step."""
    return (config.min_lr + (config.lr - config.min_lr) * config.lr_decay**step) / config.lr


def refit_done_head(
    model: MDNRNN,
    batches: Iterable[dict],
    val_batches: list[dict],
    steps: int,
    device,
    precision: str,
    lr: float = 1e-2,
    batch_size: int = 8192,
    max_states: int = 500_000,
    eval_every: int = 20,
    log: MetricsLog | None = None,
    seed: int = 0,
) -> dict:
    """Fit the done head alone on the trained LSTM's states, with early stopping.

    Trained jointly with the LSTM, the done head fits the training episodes' ends long
    before the z prediction stops improving (docs/results.md, "The done head"). Here the
    LSTM is frozen: its states over the training windows of ``batches`` (at most
    ``max_states`` steps) and the held-out ones are computed once, a freshly initialised
    head is trained on them for ``steps`` steps of ``batch_size`` random states, and of
    the jointly trained head and the fresh one every ``eval_every`` steps, the one with
    the lowest held-out done loss is kept: on the held-out episodes the result is never
    worse than the joint head. Returns where it was found (``step``: 0 is the joint
    head) and the held-out done loss before and after; ``log`` gets the held-out done
    loss at every evaluation (split ``done_refit``).
    """
    head = model.done
    model.eval()
    h, done = _states_and_ends(model, batches, device, precision, max_states)
    val_h, val_done = _states_and_ends(model, val_batches, device, precision)

    @torch.no_grad()
    def val_loss() -> float:
        return model.done_loss(head(val_h).squeeze(-1), val_done).item()

    joint = val_loss()
    best = {"step": 0, "val_done_loss": joint, "state": copy.deepcopy(head.state_dict())}
    head.reset_parameters()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    generator = torch.Generator(device).manual_seed(seed)
    for step in range(1, steps + 1):
        pick = torch.randint(len(h), (min(batch_size, len(h)),), generator=generator, device=device)
        loss = model.done_loss(head(model.drop(h[pick], generator)).squeeze(-1), done[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            current = val_loss()
            if log is not None:
                log.log({"val_done_loss": current}, step, split="done_refit")
            if current < best["val_done_loss"]:
                best = {"step": step, "val_done_loss": current,
                        "state": copy.deepcopy(head.state_dict())}  # fmt: skip
    head.load_state_dict(best.pop("state"))
    return dict(best, joint_val_done_loss=joint, steps=steps)


@torch.no_grad()
def _states_and_ends(
    model: MDNRNN, batches: Iterable[dict], device, precision: str, max_states: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's hidden states ``[N, H]`` (float32) at the real steps of the windows of
    ``batches`` (at most ``max_states`` of them), and whether each step ends its episode."""
    states, ends, count = [], [], 0
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, precision):
            out, _ = model.states(batch["z"], batch["action"], batch["restart"])
        states.append(out.float()[batch["mask"]])
        ends.append(batch["done"][batch["mask"]])
        count += len(states[-1])
        if max_states is not None and count >= max_states:
            break
    return torch.cat(states)[:max_states], torch.cat(ends)[:max_states]


@torch.no_grad()
def validate_mdnrnn(model: MDNRNN, batches: list[dict], device, precision: str) -> dict:
    """Mean loss terms over the held-out windows, and the done head's precision/recall."""
    model.eval()
    sums, steps, tp, fp, fn = {}, 0, 0, 0, 0
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, precision):
            _, logs = model.loss(batch)
            _, done_logit, _, _ = model(batch["z"], batch["action"], batch["restart"])
        weight = int(batch["mask"].sum())
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value * weight
        steps += weight
        if done_logit is not None:
            predicted, actual = (done_logit.float() > 0) & batch["mask"], batch["done"] > 0
            tp += int((predicted & actual).sum())
            fp += int((predicted & ~actual).sum())
            fn += int((~predicted & actual & batch["mask"]).sum())
    logs = {key: value / steps for key, value in sums.items()}
    if model.done is not None:
        logs["done_precision"] = tp / max(tp + fp, 1)
        logs["done_recall"] = tp / max(tp + fn, 1)
    return logs


def baseline_nll(train_batches, val_batches: list[dict], fit_batches: int = 20) -> float:
    """NLL per dim of held-out z_{t+1} under z_t + N(mean, var), fitted on training data."""
    deltas = []
    for _, batch in zip(range(fit_batches), train_batches, strict=False):
        deltas.append((batch["z_next"] - batch["z"])[batch["z_mask"]])
    deltas = torch.cat(deltas).double()
    mean, var = deltas.mean(0), deltas.var(0)
    total, count = 0.0, 0
    for batch in val_batches:
        d = (batch["z_next"] - batch["z"])[batch["z_mask"]].double()  # (N, Z)
        total += (0.5 * torch.log(2 * math.pi * var) + 0.5 * (d - mean) ** 2 / var).sum().item()
        count += d.numel()
    return total / count


def summary(run_dir: Path) -> list[str]:
    """M's held-out numbers, one line of Markdown."""
    r = read_results(run_dir, "mdnrnn")
    if not r:
        return []
    return ["## M", "", f"held-out NLL per dim {r['z_nll_per_dim']:.3f} nats (z_(t+1) = z_t "
            f"baseline {r['baseline_z_nll_per_dim']:.3f}); done precision "
            f"{r.get('done_precision', float('nan')):.2f}, recall "
            f"{r.get('done_recall', float('nan')):.2f}"]  # fmt: skip
