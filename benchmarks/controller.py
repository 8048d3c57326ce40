"""Seconds per CMA-ES generation in the dream: population 64 x 16 episodes, Doom-size M.

Two populations: one whose dreams end after about 300 steps (a per-step death chance of
1/300) and one that survives the full 2,100-step cap. Also the share of the time spent
outside ``Dream.step`` (the controllers, compaction of finished dreams, bookkeeping).

    python benchmarks/controller.py [--precision float32]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch

from worldmodels.controller import Controller
from worldmodels.dream import Dream
from worldmodels.mdnrnn import MDNRNN
from worldmodels.runtime import configure_cpu
from worldmodels.stages.controller import dream_fitness


def make_dream(death_chance: float, precision: str) -> Dream:
    torch.manual_seed(0)
    model = MDNRNN(64, 1, 512, 5)
    with torch.no_grad():  # a constant hazard, so the lengths are known in advance
        model.done.weight.zero_()
        p = max(death_chance, 1e-12)
        model.done.bias.fill_(math.log(p / (1 - p)) + math.log(model.done_pos_weight))
    initial = torch.randn(100, 64)
    return Dream(model, initial, torch.full((100, 64), -4.0), temperature=1.15, done="sample",
                 max_steps=2100, precision=precision)  # fmt: skip


def generation_seconds(dream: Dream) -> tuple[float, float, float]:
    """(seconds, share outside Dream.step, mean episode length) for one generation."""
    controller = Controller(dream.obs_size, 1, False, "tanh")
    popsize, episodes = 64, 16
    fitness = dream_fitness(dream, controller, episodes, seed=0)
    in_step, real_step = [0.0], dream.step

    def timed_step(*args, **kwargs):
        start = time.perf_counter()
        out = real_step(*args, **kwargs)
        in_step[0] += time.perf_counter() - start
        return out

    dream.step = timed_step
    candidates = np.random.default_rng(0).normal(0, 0.1, (popsize, controller.n_params))
    start = time.perf_counter()
    returns = fitness(candidates, 0)
    seconds = time.perf_counter() - start
    return seconds, 1 - in_step[0] / seconds, float(returns.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    configure_cpu()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, {args.precision}")
    for name, chance in (("dies after ~300 steps", 1 / 300), ("survives 2100 steps", 0.0)):
        seconds, outside, length = generation_seconds(make_dream(chance, args.precision))
        print(f"{name:22s}: {seconds:6.1f} s per generation (mean length {length:.0f}), "
              f"{outside:.0%} of it outside the dream step")  # fmt: skip


if __name__ == "__main__":
    main()
