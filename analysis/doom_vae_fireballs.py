"""How fast does V learn to draw what kills? Fireball pixels drawn back, step by step.

Trains a fresh V (the paper's architecture, bf16 autocast) on a run's training frames at
a given learning rate and, every ``--every`` steps, prints the squared error of the
reconstructions of held-out frames and the share of fireball pixels
(``DoomTakeCover.fireballs``) that V draws back in held-out frames with a close fireball
(at least 50 such pixels), as the vae stage reports at its end. Writes nothing.

    python analysis/doom_vae_fireballs.py runs/doom_laptop --lr 1e-3 --steps 3000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from worldmodels.envs import DoomTakeCover
from worldmodels.rollouts import FrameStream, episode_paths, read_episode, split_held_out
from worldmodels.runtime import autocast, configure_cpu
from worldmodels.stages.vae import danger_frames, danger_recall
from worldmodels.vae import ConvVAE, to_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    configure_cpu()
    paths = episode_paths(f"{args.run_dir}/rollouts")
    train, val = split_held_out(paths, 20, index=lambda p: int(p.stem))
    close = danger_frames(val, DoomTakeCover.fireballs, n=1000)
    sample = torch.from_numpy(np.concatenate([read_episode(p)["obs"][::10] for p in val[:60]]))
    model = ConvVAE(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = FrameStream(train, args.batch_size, 20_000, args.seed)
    step, start, cpu = 0, time.perf_counter(), torch.device("cpu")
    for epoch in range(10**6):
        for batch in stream.batches(epoch):
            with autocast(cpu, "bfloat16"):
                loss, _ = model.loss(torch.from_numpy(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.every == 0:
                report(model, sample, close, step, time.perf_counter() - start, args.lr)
                model.train()
            if step >= args.steps:
                return


@torch.no_grad()
def report(model, sample, close, step, seconds, lr) -> None:
    model.eval()
    x = to_input(sample)
    error = (model.decode(model.encode(x)[0]) - x).square().sum((1, 2, 3)).mean().item()
    found = danger_recall(model, close, DoomTakeCover.fireballs)
    print(f"lr {lr:g} step {step} ({seconds:.0f} s): squared error {error:.1f}; fireball "
          f"pixels drawn back {found['recall']:.3f} (precision {found['precision']:.3f}, "
          f"{found['frames']} frames)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
