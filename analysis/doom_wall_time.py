"""How much of the Doom data policy's time is spent against a wall?

A dream learns what happens to a player who stays at a wall only from data where the
player stays at a wall. This script plays the data policy (a uniform action held for 1
to ``max_hold`` steps; the paper's: 10) in the real game for each ``--max-hold`` given,
reads the player's position across the room from ViZDoom (``POSITION_Y``; the room runs
from 16 to 752, the player starts at 384), and prints the mean episode length, the
fraction of steps within 24 units of a wall, and how long the stays at a wall last.

    python analysis/doom_wall_time.py --max-hold 10 50 --episodes 60
"""

from __future__ import annotations

import argparse

import numpy as np
import vizdoom as vzd

from worldmodels.envs import doom_data_policy, make_env

WALLS = (16, 752)  # POSITION_Y of the player standing against the left / right wall
NEAR = 24  # within this many units of a wall counts as at the wall (a step moves ~8)


def wall_stays(at_wall: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``at_wall``."""
    edges = np.diff(np.concatenate([[0], at_wall.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def play(env, max_hold: int, episodes: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(episode lengths, per-episode at-wall flags) of the data policy."""
    game = env.unwrapped.game
    lengths, flags = [], []
    for i in range(episodes):
        rng = np.random.default_rng([seed, i])
        env.reset(seed=int(rng.integers(2**31)))
        policy, ys, done = doom_data_policy(rng, max_hold), [], False
        while not done:
            ys.append(game.get_game_variable(vzd.GameVariable.POSITION_Y))  # before the step
            _, _, terminated, truncated, _ = env.step(policy(None))
            done = terminated or truncated
        ys = np.array(ys)
        lengths.append(len(ys))
        flags.append((ys < WALLS[0] + NEAR) | (ys > WALLS[1] - NEAR))
    return np.array(lengths), flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-hold", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    env = make_env("doom_takecover")
    for max_hold in args.max_hold:
        lengths, flags = play(env, max_hold, args.episodes, args.seed)
        stays = np.concatenate([wall_stays(f) for f in flags])
        print(
            f"held 1-{max_hold}: mean length {lengths.mean():.0f}, at a wall "
            f"{np.concatenate(flags).mean():.3f} of steps, {len(stays) / len(lengths):.2f} "
            f"stays per episode, mean {stays.mean() if len(stays) else 0:.1f} steps, "
            f"{(stays >= 30).sum() / len(lengths):.2f} per episode of 30+ steps"
        )
    env.close()


if __name__ == "__main__":
    main()
