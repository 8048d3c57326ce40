"""What CarRacing controllers do with steering and pedals in their dream.

For each run directory, its controller (controller/best.pt) plays dreams of the first
run directory's M (tau 1.0, its own dropout) and the script prints the mean dream
return, mean |steer|, the 5th / 50th / 95th percentiles of gas and the share of steps
that brake. A controller whose gas or brake lies outside what the data policy does
(gas uniform in [0.1, 0.5], a brake of at most 0.5 now and then) is using parts of the
dream its data never showed.

    python analysis/carracing_pedals.py DREAM_RUN RUN [RUN ...] [--dreams 128]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.dream import Dream
from worldmodels.stages.controller import load_controller


def pedals(dream: Dream, run_dir: str, dreams: int, seed: int) -> dict:
    controller, params = load_controller(run_dir)
    w = torch.as_tensor(params[None], dtype=torch.float32)
    act, actions = controller.dream_policy(w, torch.zeros(dreams, dtype=torch.long)), []

    def policy(obs, index):
        actions.append(act(obs, index))
        return actions[-1]

    returns, _ = dream.rollout(policy, dreams, torch.Generator().manual_seed(seed))
    a = torch.cat(actions).numpy()
    return {"dream": float(returns.mean()), "steer_abs": float(np.abs(a[:, 0]).mean()),
            "gas_5_50_95": np.percentile(a[:, 1], [5, 50, 95]).round(2).tolist(),
            "brake_share": float((a[:, 2] > 0).mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dream_run", help="the run directory whose M dreams")
    parser.add_argument("runs", nargs="+", help="run directories whose controllers play")
    parser.add_argument("--dreams", type=int, default=128)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    dream = Dream.from_run_dir(args.dream_run, temperature=1.0)
    for run in args.runs:
        print(run, pedals(dream, run, args.dreams, args.seed))


if __name__ == "__main__":
    main()
