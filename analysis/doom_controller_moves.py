"""What does a run's DoomTakeCover controller do? Its moves in the real game.

Plays ``controller/best.pt`` of RUN_DIR for ten real episodes (seeds 0-9) and prints
the mean length, the share of steps it moves left, stays and moves right (as the game
reads the action: ``DoomTakeCover.move``), and how often the move changes.

    python analysis/doom_controller_moves.py RUN_DIR
"""

from __future__ import annotations

import sys

import numpy as np

from worldmodels.agent import Agent
from worldmodels.envs import DoomTakeCover
from worldmodels.stages.controller import load_controller


def main(run_dir: str, episodes: int = 10) -> None:
    controller, params = load_controller(run_dir)
    agent = Agent.from_run_dir(run_dir, controller.spec)
    moves, step = [], agent.env.step  # moves: one list per episode

    def recording_step(action):
        moves[-1].append(int(DoomTakeCover.move(action)[0]))
        return step(action)

    agent.env.step = recording_step
    lengths = []
    for seed in range(episodes):
        moves.append([])
        lengths.append(agent.play(params, seed)["length"])
    m = np.concatenate(moves)
    shares = ", ".join(f"{name} {np.mean(m == k):.2f}" for name, k in [("left", -1), ("none", 0),
                                                                     ("right", 1)])  # fmt: skip
    changes = sum(np.count_nonzero(np.diff(e)) for e in moves) * 100 / len(m)
    print(f"{run_dir}: mean length {np.mean(lengths):.0f} over {episodes} episodes; moves "
          f"{shares}; {changes:.1f} changes of move per 100 steps")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
