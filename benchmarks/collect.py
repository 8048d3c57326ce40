"""Collection throughput against the game's raw stepping rate, in one run.

Measures (1) the raw single-env rate of the game (its own gymnasium env, random
actions, no resizing, no saving), (2) what the extra per-frame work costs on its own
(crop + INTER_AREA resize; writing the compressed episode), and (3) the `collect` stage
with 1 and with 2 worker processes, end to end including worker start-up. Prints
collection frames/s as a ratio of W x raw (goal: >= 0.9).

    python benchmarks/collect.py [--game doom_takecover] [--episodes 60]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np

from worldmodels.envs import get_game, make_env, to_frame
from worldmodels.rollouts import write_episode
from worldmodels.stages.collect import CollectConfig, collect, play_episode


def raw_rate(game: str, steps: int) -> float:
    """Steps/s of the game's own env with random actions (the floor of all our work)."""
    env = make_env(game).env  # the wrapped gymnasium env, before our frame processing
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start, n = time.perf_counter(), 0
    while n < steps:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        n += 1
        if terminated or truncated:
            env.reset(seed=int(rng.integers(1 << 31)))
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def per_frame_costs(game: str) -> tuple[float, float]:
    """Microseconds per frame of resizing and of writing, on one real episode."""
    env = make_env(game)
    episode = play_episode(env, get_game(game), seed=0, index=0)
    screen = env.env.reset(seed=0)[0]
    screen = screen["screen"] if isinstance(screen, dict) else screen
    n = len(episode["obs"])
    start = time.perf_counter()
    for _ in range(n):
        to_frame(screen, env.keep_rows)
    resize = (time.perf_counter() - start) / n * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_episode(f"{tmp}/e.npz", episode)
        write = (time.perf_counter() - start) / n * 1e6
    env.close()
    return resize, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="doom_takecover")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--raw-steps", type=int, default=20_000)
    args = parser.parse_args()

    raw = raw_rate(args.game, args.raw_steps)
    resize_us, write_us = per_frame_costs(args.game)
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            config = CollectConfig(game=args.game, episodes=args.episodes, workers=workers)
            rates[workers] = collect(config, tmp)["frames_per_s"]

    print(f"\nmachine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"game: {args.game}")
    print(f"raw single env:            {raw:8.0f} steps/s  ({1e6 / raw:.0f} us/step)")
    print(f"crop + resize (INTER_AREA): {resize_us:7.0f} us/frame")
    print(f"write compressed episode:  {write_us:8.0f} us/frame")
    for workers, rate in rates.items():
        print(
            f"collect, {workers} worker(s):     {rate:8.0f} frames/s  "
            f"= {rate / (workers * raw):.2f} x {workers} x raw"
        )


if __name__ == "__main__":
    main()
