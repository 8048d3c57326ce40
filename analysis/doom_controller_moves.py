"""What does a run's DoomTakeCover controller do? Its moves in the real game and the dream.

Plays ``controller/best.pt`` of RUN_DIR for ten real episodes (seeds 0-9) and in
``--dreams`` dreams of the run's M (tau 1.15, done by logit), and prints for each the
mean length, the share of steps it moves left, stays and moves right (as the game reads
the action: ``DoomTakeCover.move``), and how often the move changes. The data policy
holds each move 1-``max_hold`` steps; a controller that changes its move far more often
in the dream plays where M has seen no data.

    python analysis/doom_controller_moves.py RUN_DIR [--episodes 10] [--dreams 256]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.agent import Agent
from worldmodels.dream import Dream
from worldmodels.envs import DoomTakeCover
from worldmodels.stages.controller import load_controller


def describe(where: str, moves: list[np.ndarray]) -> str:
    """Mean length, shares of left / none / right and changes of move per 100 steps."""
    m = np.concatenate(moves)
    shares = ", ".join(f"{name} {np.mean(m == k):.2f}" for name, k in [("left", -1), ("none", 0),
                                                                     ("right", 1)])  # fmt: skip
    changes = sum(np.count_nonzero(np.diff(e)) for e in moves) * 100 / len(m)
    return (f"{where}: mean length {np.mean([len(e) for e in moves]):.0f}; moves {shares}; "
            f"{changes:.1f} changes of move per 100 steps")  # fmt: skip


def real_moves(run_dir: str, episodes: int) -> list[np.ndarray]:
    controller, params = load_controller(run_dir)
    agent = Agent.from_run_dir(run_dir, controller.spec)
    moves, step = [], agent.env.step  # moves: one list per episode

    def recording_step(action):
        moves[-1].append(int(DoomTakeCover.move(action)[0]))
        return step(action)

    agent.env.step = recording_step
    for seed in range(episodes):
        moves.append([])
        agent.play(params, seed)
    return [np.array(e) for e in moves]


@torch.no_grad()
def dream_moves(run_dir: str, dreams: int, temperature: float) -> list[np.ndarray]:
    controller, params = load_controller(run_dir)
    dream = Dream.from_run_dir(run_dir, temperature=temperature)
    w = torch.as_tensor(params[None], dtype=torch.float32)
    generator = torch.Generator().manual_seed(7)
    recorded = []  # per step: (indices of the running dreams, their moves)
    act = controller.dream_policy(w, torch.zeros(dreams, dtype=torch.long))

    def policy(obs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        action = act(obs, index)
        recorded.append((index.numpy(), DoomTakeCover.move(action.numpy())[:, 0]))
        return action

    dream.rollout(policy, dreams, generator)
    moves = [[] for _ in range(dreams)]
    for index, move in recorded:
        for i, m in zip(index, move, strict=True):
            moves[i].append(int(m))
    return [np.array(e) for e in moves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=10, help="real episodes (seeds 0..)")
    parser.add_argument("--dreams", type=int, default=256, help="dreams (0: none)")
    parser.add_argument("--temperature", type=float, default=1.15)
    args = parser.parse_args()
    print(describe(f"{args.run_dir}, {args.episodes} real episodes",
                   real_moves(args.run_dir, args.episodes)))  # fmt: skip
    if args.dreams:
        print(describe(f"{args.run_dir}, {args.dreams} dreams at tau {args.temperature}",
                       dream_moves(args.run_dir, args.dreams, args.temperature)))  # fmt: skip


if __name__ == "__main__":
    main()
