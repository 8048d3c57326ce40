"""How good is a blind sweep at DoomTakeCover, and does the dream know?

Plays the blind sweep (move right ``period`` steps, then left ``period``, and so on; it
never looks at the screen) for each period in the real game and in the run's dream, with
the random policy (held 1-10 steps) beside them. A controller trained in the dream that
scores no more than the best sweep has learnt to sweep, not to dodge; a dream that ranks
the sweeps otherwise than the game does rewards the wrong rhythm.

    python analysis/doom_sweeps.py RUN_DIR [--periods 35 70 100 140 200] [--episodes 100]
        [--dreams 1024] [--temperature 1.15]

The real episodes are those of RUN_DIR's evaluate stage (its first ``--episodes`` seeds),
so that its controller's score can be set beside each policy's, episode by episode (the
controller's lead: mean and standard error); dreams are seeded as the calibration's
(done by logit). Prints mean survival (steps) and its standard deviation.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from doom_dream_policies import GAME, Sweep

from worldmodels.artifacts import read_results, run_env
from worldmodels.calibrate import dream_lengths, play_blind
from worldmodels.dream import Dream
from worldmodels.envs import HeldUniform, make_env
from worldmodels.executor import Work, executor


def blind(period: int) -> type:
    """The random policy (period 0) or the sweep of ``period`` steps."""
    return Sweep.every(period) if period else HeldUniform


def name(period: int) -> str:
    return f"sweep every {period} steps" if period else "random (held 1-10)"


def play_on_seed(env, job: tuple[int, int]) -> float:
    """Return of ``blind(period)`` in the game's episode of ``seed``: job (period, seed)."""
    period, seed = job
    return play_blind(env, blind(period), seed, np.random.default_rng(seed))[1]


def real_returns(run_dir: str, periods: list[int], seeds: list[int], workers) -> list:
    """Returns of ``blind(p)`` for each period p, an array over ``seeds`` each."""
    work = Work(GAME, make_env, (GAME,), play_on_seed, repr, run_env(run_dir))
    played = executor(workers).map(work, [(p, s) for p in periods for s in seeds])
    return [np.array(played[k * len(seeds) : (k + 1) * len(seeds)]) for k in range(len(periods))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a DoomTakeCover run with V, M and an evaluate stage")
    parser.add_argument("--periods", type=int, nargs="+", default=[35, 70, 100, 140, 200])
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per policy")
    parser.add_argument("--dreams", type=int, default=1024, help="dreams per policy")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--workers", type=int, default=None, help="real-game workers")
    args = parser.parse_args()
    if min(args.periods) < 1:
        parser.error(f"--periods must be >= 1, got {args.periods}")
    evaluated = read_results(args.run_dir, "evaluate")
    if "seeds" not in evaluated:
        parser.error(f"{args.run_dir}/evaluate/results.json is missing or has no seeds")
    seeds = [int(s) for s in evaluated["seeds"][: args.episodes]]
    ours = np.array(evaluated["real"]["scores"][: args.episodes])
    periods = [0, *args.periods]
    real = real_returns(args.run_dir, periods, seeds, args.workers)
    dream = Dream.from_run_dir(args.run_dir, temperature=args.temperature)
    print(f"the run's controller on the same {len(seeds)} episodes: {ours.mean():.1f} +- "
          f"{ours.std():.1f}\n\n| policy | real game | dream (tau {args.temperature}, "
          f"{args.dreams} dreams) | dream / real | the controller's lead (episodes ahead) |\n"
          "|---|---|---|---|---|")  # fmt: skip
    for period, theirs in zip(periods, real, strict=True):
        with torch.no_grad():
            dreamt = dream_lengths(dream, GAME, blind(period), args.dreams, 0)[0]
        lead = ours - theirs
        print(f"| {name(period)} | {theirs.mean():.1f} +- {theirs.std():.1f} | "
              f"{dreamt.mean():.1f} +- {dreamt.std():.1f} | {dreamt.mean() / theirs.mean():.2f} "
              f"| {lead.mean():.1f} +- {lead.std() / np.sqrt(len(lead)):.1f} "
              f"({np.sum(lead > 0)}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
