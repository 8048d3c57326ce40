"""Can M's reward head tell a good drive from a bad one? Its predictions on real episodes.

A CarRacing dream pays what M's reward head predicts, so a controller trained in it is
only as good as the head's ranking of drives. This script runs M of RUN_DIR over the
recorded steps of real episodes (teacher forcing: the real z and actions, z = V's mean)
and compares, episode by episode, the real return with the sum of the predicted rewards.
For RUN_DIR's held-out episodes, and for any folders of latents files given (e.g. a
round's ``played/`` episodes of the iterate stage), it prints both, the mean per-step
error, and the correlation of the two returns over the episodes.

    python analysis/carracing_reward.py runs/carracing_laptop
    python analysis/carracing_reward.py runs/carracing_laptop runs/x/rounds/1/played
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from worldmodels.artifacts import load_latents, load_mdnrnn
from worldmodels.rollouts import split_held_out
from worldmodels.stages.evaluate import spearman
from worldmodels.train import load_checkpoint


@torch.no_grad()
def predicted_rewards(mdnrnn, episode: dict) -> np.ndarray:
    """M's predicted reward at every step of a recorded episode (teacher forcing)."""
    z = torch.from_numpy(episode["mu"])[None]
    action = torch.from_numpy(episode["action"].astype(np.float32))[None]
    restart = torch.zeros(z.shape[:2])
    restart[0, 0] = 1.0
    _, _, reward, _ = mdnrnn(z, action, restart)
    return reward[0].numpy()


def load_folder(folder: Path) -> list[dict]:
    episodes = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            episodes.append({k: npz[k] for k in ("mu", "action", "reward")})
    if not episodes:
        raise FileNotFoundError(f"no latents files (*.npz) in {folder}")
    return episodes


def compare(mdnrnn, episodes: list[dict], label: str) -> None:
    real = np.array([e["reward"].sum() for e in episodes])
    steps = [(predicted_rewards(mdnrnn, e), e["reward"]) for e in episodes]
    predicted = np.array([p.sum() for p, _ in steps])
    step_error = np.mean([np.abs(p - r).mean() for p, r in steps])
    pearson, rho = np.corrcoef(real, predicted)[0, 1], spearman(real, predicted)
    print(f"{label}: {len(episodes)} episodes; real return {real.mean():.1f} +- {real.std():.1f}, "
          f"M's sum of predicted rewards {predicted.mean():.1f} +- {predicted.std():.1f}; "
          f"mean |error| per step {step_error:.3f}; over the episodes Pearson {pearson:.2f}, "
          f"Spearman {rho:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("folders", type=Path, nargs="*", help="folders of latents files")
    args = parser.parse_args()
    mdnrnn = load_mdnrnn(args.run_dir).float()
    episodes, _ = load_latents(args.run_dir, ("mu", "action", "reward"))
    val_every = load_checkpoint(args.run_dir / "mdnrnn" / "ckpt.pt", "MDNRNN")["config"][
        "val_every"
    ]
    _, val = split_held_out(episodes, val_every)  # the episodes M was not trained on
    compare(mdnrnn, val, f"{args.run_dir} held-out episodes")
    for folder in args.folders:
        compare(mdnrnn, load_folder(folder), str(folder))


if __name__ == "__main__":
    main()
