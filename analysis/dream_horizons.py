"""Does a shorter, cooler or dropout-free dream order controllers as the real game does?

Each run directory's controller (controller/best.pt) plays the same dreams of
DREAM_RUN's M, and the script prints its mean dream return summed over the first H
steps for several horizons H, then Spearman's rho between those returns and the
controllers' real-game means (from each run's evaluate/results.json, or given as
RUN=MEAN). The controllers should have been scored on the same real tracks.

    python analysis/dream_horizons.py DREAM_RUN RUN [RUN=MEAN ...] [--temperature 1.0]
        [--dropout RATE] [--dreams 128] [--horizons 50 100 ... 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from worldmodels.dream import Dream
from worldmodels.stages.controller import load_controller
from worldmodels.stages.evaluate import spearman

HORIZONS = (50, 100, 200, 300, 500, 700, 1000)


def real_mean(run: str) -> tuple[str, float]:
    """(run directory, real-game mean) from ``RUN=MEAN`` or RUN/evaluate/results.json."""
    if "=" in run:
        run, mean = run.split("=", 1)
        return run, float(mean)
    path = Path(run) / "evaluate" / "results.json"
    if not path.exists():
        raise SystemExit(f"{path} does not exist: evaluate {run} or give RUN=MEAN")
    return run, float(json.loads(path.read_text())["real"]["mean"])


@torch.no_grad()
def partial_returns(
    dream: Dream, run_dir: str, dreams: int, seed: int, horizons: tuple[int, ...] = HORIZONS
) -> list[float]:
    """Mean dream return over the first H steps, for each H in ``horizons``."""
    controller, params = load_controller(run_dir)
    w = torch.as_tensor(params[None], dtype=torch.float32)
    every = torch.arange(dreams)
    act = controller.dream_policy(w, torch.zeros(dreams, dtype=torch.long))
    generator = torch.Generator().manual_seed(seed)
    state = dream.reset(dreams, generator)
    running = torch.ones(dreams, dtype=torch.bool)
    rewards = torch.zeros(dreams, max(horizons))
    for t in range(max(horizons)):
        action = act(dream.observe(state), every)  # C acts every controller.repeat steps
        state, reward, terminated, truncated = dream.step(state, action, generator)
        rewards[:, t] = reward * running
        running &= ~(terminated | truncated)
        if not running.any():
            break
    summed = rewards.cumsum(1).mean(0)
    return [float(summed[h - 1]) for h in horizons]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dream_run", help="the run directory whose M dreams")
    parser.add_argument("runs", nargs="+", help="RUN or RUN=MEAN: controllers and real means")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--dropout", type=float, help="M's dropout in the dream (default: M's)")
    parser.add_argument("--dreams", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    args = parser.parse_args()
    horizons = tuple(args.horizons)
    dream = Dream.from_run_dir(args.dream_run, temperature=args.temperature)
    if args.dropout is not None:
        dream.mdnrnn.dropout = args.dropout
    print(f"tau {args.temperature}, dropout {dream.mdnrnn.dropout}, {args.dreams} dreams; "
          f"dream return over the first {', '.join(map(str, horizons))} steps")  # fmt: skip
    real, dreamt = [], []
    for run in args.runs:
        run_dir, mean = real_mean(run)
        real.append(mean)
        dreamt.append(partial_returns(dream, run_dir, args.dreams, args.seed, horizons))
        print(f"{run_dir}: real {mean:.1f}, dream", " ".join(f"{x:.1f}" for x in dreamt[-1]))
    rho = [spearman(real, [d[i] for d in dreamt]) for i in range(len(horizons))]
    print("Spearman's rho:", " ".join(f"{h}: {r:.2f}" for h, r in zip(horizons, rho, strict=True)))


if __name__ == "__main__":
    main()
