"""Dream stepping speed for the Doom-size model (LSTM 512, z 64, K 5), in one run.

  (a) agent-steps/s stepping 1,024 dreams as one batch;
  (b) agent-steps/s stepping dreams one at a time, as the original did;
  (c) the ceiling: this machine's measured matmul FLOP/s (a large float32 GEMM) divided
      by the model's FLOPs per agent-step.
Goals: (a) >= 15x (b), and (a) >= 60% of (c). Also (a) under bf16 autocast, with the
dream's statistics (mean and spread of z after 50 steps) in both precisions.

    python benchmarks/dream.py [--steps 50]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from worldmodels.dream import Dream
from worldmodels.mdnrnn import MDNRNN
from worldmodels.runtime import configure_cpu

Z, H, K, A = 64, 512, 5, 1


def flops_per_step(model: MDNRNN) -> int:
    """Multiply-adds x 2 of one agent-step: LSTM gates, mixture head, done head."""
    lstm = 4 * H * (model.input_size + H)
    heads = H * (3 * Z * K) + H
    return 2 * (lstm + heads)


def gemm_flops_per_s(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def make_dream(precision: str = "float32") -> Dream:
    torch.manual_seed(0)
    model = MDNRNN(Z, A, H, K)
    with torch.no_grad():  # keep every dream alive: the done logit stays negative
        model.done.weight.zero_()
        model.done.bias.fill_(-10.0)
    initial = torch.randn(100, Z)
    logvar = torch.full((100, Z), -4.0)
    return Dream(model, initial, logvar, temperature=1.15, max_steps=10**9, precision=precision)


def steps_per_s(dream: Dream, n: int, steps: int):
    gen = torch.Generator().manual_seed(0)
    state = dream.reset(n, gen)
    action = torch.zeros(n, A)
    state, *_ = dream.step(state, action, gen)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        state, *_ = dream.step(state, action, gen)
    seconds = time.perf_counter() - start
    return n * steps / seconds, state.z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dreams", type=int, default=1024)
    args = parser.parse_args()
    configure_cpu()
    dream = make_dream()
    batched, z32 = steps_per_s(dream, args.dreams, args.steps)
    single, _ = steps_per_s(dream, 1, args.steps * 10)
    bf16, z16 = steps_per_s(make_dream("bfloat16"), args.dreams, args.steps)
    flops = flops_per_step(dream.mdnrnn)
    peak = gemm_flops_per_s()
    ceiling = peak / flops

    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"  # noqa: E501
    )
    print(f"model: {flops / 1e6:.2f} MFLOP per agent-step; GEMM {peak / 1e9:.0f} GFLOP/s")
    print(f"(a) {args.dreams} dreams batched: {batched:9.0f} agent-steps/s")
    print(f"(b) one dream at a time:    {single:9.0f} agent-steps/s")
    print(f"(c) ceiling:                {ceiling:9.0f} agent-steps/s")
    print(f"(a)/(b) = {batched / single:.1f}x (goal >= 15x); (a)/(c) = {batched / ceiling:.0%} "
          f"(goal >= 60%)")  # fmt: skip
    print(
        f"bf16 batched: {bf16:9.0f} agent-steps/s = {bf16 / batched:.2f}x float32; z after "
        f"{args.steps + 1} steps: mean {z32.mean():.3f} / {z16.mean():.3f}, "
        f"std {z32.std():.3f} / {z16.std():.3f} (float32 / bf16)"
    )


if __name__ == "__main__":
    main()
