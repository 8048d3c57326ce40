"""Forward + backward time of mixture_density_loss against torch.distributions.

At the MDN-RNN's size for Doom (B=100, T=500, D=64, K=5, per_dim), both compute the same
NLL from the same parameters; the ratio is printed. Run by hand:

    python benchmarks/mdn_loss.py [--batch 100 --seq 500 --dim 64 --components 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.nn import functional as F

from mdn import MixtureParams, mixture_density_loss


def make_inputs(batch: int, seq: int, dim: int, k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, seq, dim, k)
    raw = [torch.randn(shape, generator=gen).requires_grad_() for _ in range(3)]
    y = torch.randn(batch, seq, dim, generator=gen)
    return raw, y


def to_params(raw) -> MixtureParams:
    logits, mu, s = raw
    return MixtureParams(F.log_softmax(logits, -1), mu, 1e-3 + F.softplus(s))


def ours(raw, y) -> torch.Tensor:
    return mixture_density_loss(y, to_params(raw), check_finite=False)


def reference(raw, y) -> torch.Tensor:
    return -to_params(raw).distribution().log_prob(y).mean()


def time_fwd_bwd(fn, raw, y, repeats: int) -> tuple[float, float]:
    loss = fn(raw, y)  # warm-up
    loss.backward()
    times = []
    for _ in range(repeats):
        for t in raw:
            t.grad = None
        start = time.perf_counter()
        loss = fn(raw, y)
        loss.backward()
        times.append(time.perf_counter() - start)
    return min(times), loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seq", type=int, default=500)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    raw, y = make_inputs(args.batch, args.seq, args.dim, args.components)
    t_ours, l_ours = time_fwd_bwd(ours, raw, y, args.repeats)
    t_ref, l_ref = time_fwd_bwd(reference, raw, y, args.repeats)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"size: B={args.batch} T={args.seq} D={args.dim} K={args.components}, per_dim")
    print(f"mdn.mixture_density_loss    {t_ours * 1e3:8.1f} ms  (loss {l_ours:.6f})")
    print(f"torch.distributions         {t_ref * 1e3:8.1f} ms  (loss {l_ref:.6f})")
    print(f"speed-up: {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
