"""V's training and encoding speed in float32 and bf16, and its memory as data grows.

In one run, on collected Doom episodes (collected first if the directory has none):
  1. training frames/s for float32 and for bf16 autocast, each from the same seed for
     the same steps, and both validation losses at the end (goal: bf16 >= 1.3x, val loss
     within 2%);
  2. encoding frames/s in each precision;
  3. peak resident memory of a full epoch over a dataset and over one 5x larger, each
     in a fresh process (goal: flat).

    python benchmarks/vae.py [--run-dir runs/bench_vae] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from worldmodels.rollouts import episode_path, episode_paths, read_episode, write_episode
from worldmodels.stages.collect import CollectConfig, collect
from worldmodels.stages.encode import EncodeConfig, encode
from worldmodels.stages.vae import VAEConfig, train_vae

MEMORY_CHILD = """
import json, resource, sys
from worldmodels.stages.vae import VAEConfig, train_vae
progress = train_vae(VAEConfig(precision="float32", buffer_frames=2000, checkpoint_every=10**9,
                               val_frames=200), sys.argv[1])
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "steps": progress["steps"]}))
"""


def train_speed(rollouts: Path, out: Path, precision: str, steps: int) -> tuple[float, float]:
    run = out / precision
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "rollouts").exists():
        (run / "rollouts").symlink_to(rollouts.resolve())
    config = VAEConfig(precision=precision, max_steps=steps, checkpoint_every=10**9)
    start = time.perf_counter()
    progress = train_vae(config, run)
    seconds = time.perf_counter() - start
    return steps * config.batch_size / seconds, progress["loss"]


def encode_speed(out: Path, precision: str) -> float:
    run = out / precision
    for path in (run / "latents").glob("*.npz"):
        path.unlink()
    frames = sum(len(np.load(p)["reward"]) for p in episode_paths(run / "rollouts"))
    start = time.perf_counter()
    encode(EncodeConfig(precision=precision), run)
    return frames / (time.perf_counter() - start)


def peak_memory(rollouts: Path, out: Path, episodes: int) -> dict:
    """Peak RSS of one epoch over ``episodes`` copies of the collected episodes."""
    run = out / f"memory_{episodes}"
    source = episode_paths(rollouts)
    for i in range(episodes):
        target = episode_path(run / "rollouts", i)
        if not target.exists():
            write_episode(target, read_episode(source[i % len(source)]))
    result = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(run)], check=True,
                            capture_output=True, text=True)  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/bench_vae")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--memory-episodes", type=int, default=40)
    args = parser.parse_args()
    out = Path(args.run_dir)
    rollouts = out / "rollouts"
    collect(CollectConfig(episodes=args.episodes), rollouts)

    speed, val = {}, {}
    for precision in ("float32", "bfloat16"):
        speed[precision], val[precision] = train_speed(rollouts, out, precision, args.steps)
    enc = {p: encode_speed(out, p) for p in ("float32", "bfloat16")}
    small = peak_memory(rollouts, out, args.memory_episodes)
    large = peak_memory(rollouts, out, 5 * args.memory_episodes)

    print(f"\nmachine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores")
    for p in speed:
        print(f"train {p:9s} {speed[p]:7.0f} frames/s   val loss after {args.steps} steps "
              f"{val[p]:.2f}   encode {enc[p]:7.0f} frames/s")  # fmt: skip
    print(
        f"bf16 / float32: train {speed['bfloat16'] / speed['float32']:.2f}x, "
        f"encode {enc['bfloat16'] / enc['float32']:.2f}x, "
        f"val loss {100 * (val['bfloat16'] / val['float32'] - 1):+.1f}%"
    )
    print(
        f"peak memory, one epoch: {args.memory_episodes} episodes {small['peak_mb']:.0f} MB, "
        f"{5 * args.memory_episodes} episodes {large['peak_mb']:.0f} MB "
        f"(ratio {large['peak_mb'] / small['peak_mb']:.2f})"
    )


if __name__ == "__main__":
    main()
