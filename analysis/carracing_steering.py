"""Does the CarRacing dream steer as the game does?

From the real game (the data policy for the first ``--start`` steps, then full left, no
steering or full right at gas 0.3 for ``--steps`` steps) and from dreams of RUN_DIR's M
started at the same step of its stored episodes (M's state warmed up on the real steps
before it), the script measures how far the road's centre moves sideways in the band
ahead of the car (columns of the 64x64 frame; V's decoded frames in the dream) and prints
the mean shift for each steering. A dream whose shifts are smaller than the game's
answers the wheel too weakly: a controller evolved in it learns to steer harder than
the real car needs.

    python analysis/carracing_steering.py RUN_DIR [--steps 15] [--start 50] [--tracks 20]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.artifacts import load_vae
from worldmodels.dream import Dream
from worldmodels.envs import CarRacing, DrivingPolicy, road_columns
from worldmodels.vae import to_frames

STEERING = (-1.0, 0.0, 1.0)
GAS = 0.3


def road_centre(frames: np.ndarray) -> np.ndarray:
    """The mean column of the road ahead of the car in each frame (nan where none shows)."""
    columns = [road_columns(frame) for frame in frames]
    return np.array([c.mean() if c.size else np.nan for c in columns])


def real_shift(steer: float, steps: int, start: int, tracks: int) -> float:
    env, shifts = CarRacing(), []
    for seed in range(tracks):
        policy = DrivingPolicy(np.random.default_rng(seed))
        frame, _ = env.reset(seed=seed)
        for _ in range(start):
            frame, *_ = env.step(policy(frame))
        before = road_centre(frame[None])[0]
        for _ in range(steps):
            frame, *_ = env.step(np.array([steer, GAS, 0.0], np.float32))
        shifts.append(road_centre(frame[None])[0] - before)
    env.close()
    return float(np.nanmean(shifts))


@torch.no_grad()
def dream_shift(dream: Dream, vae, steer: float, steps: int, n: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    state = dream.reset(n, generator)
    before = road_centre(to_frames(vae.decode(state.z)))
    action = torch.tensor([[steer, GAS, 0.0]]).repeat(n, 1)
    for _ in range(steps):
        state, *_ = dream.step(state, action, generator)
    return float(np.nanmean(road_centre(to_frames(vae.decode(state.z))) - before))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=15, help="steps of held steering")
    parser.add_argument("--start", type=int, default=50, help="after the zoom-in: 50")
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--dreams", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    dream = Dream.from_run_dir(args.run_dir, start=args.start, temperature=args.temperature)
    vae = load_vae(args.run_dir)
    print(f"road centre shift (columns of 64) after {args.steps} steps of steering, gas {GAS}:")
    for steer in STEERING:
        real = real_shift(steer, args.steps, args.start, args.tracks)
        dreamt = dream_shift(dream, vae, steer, args.steps, args.dreams, args.seed)
        print(f"  steer {steer:+.0f}: real {real:+.1f}, dream {dreamt:+.1f}", flush=True)


if __name__ == "__main__":
    main()
