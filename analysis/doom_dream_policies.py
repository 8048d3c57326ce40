"""Does the Doom dream tell blind policies apart as the real game does?

The calibration (stage ``calibrate``) compares two policies, no-op and the random data
policy. This script widens the check to seven blind DoomTakeCover policies and prints
their mean survival in the real game and in the run's dream (by both done rules, at
temperatures 1.0 and 1.15), each dream mean also as a ratio to the real one. A faithful
dream keeps the real game's order; a dream that rewards, say, holding one direction more
than the game does invites the controller to learn exactly that.

    python analysis/doom_dream_policies.py runs/doom_laptop --episodes 60 --dreams 400

Policies (action in [-1, 1]; the game moves left below -1/3 and right above 1/3):
``noop`` 0; ``right`` +1; ``sweep20`` +1 and -1 in turns of 20 steps; ``sweep100`` the
same in turns of 100 steps (about the best blind sweep in the game); ``step_uniform`` a
new uniform action every step; ``random`` the data policy, uniform held for 1-10 steps;
``random_snapped`` the data policy with each action snapped to -1, 0 or +1 as the game
reads it: the same moves in the game, so a dream that has learnt the game's thresholds
scores it as ``random``.

With the damage flash shown (the default), it then counts hits (onsets of the red flash)
of the data policy: in the run's stored held-out episodes, and in dreams at tau 1.0,
whose frames V decodes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.artifacts import load_vae, run_env
from worldmodels.calibrate import NoOp, dream_lengths, real_lengths
from worldmodels.dream import DONE_MODES, Dream
from worldmodels.envs import DoomTakeCover, HeldUniform
from worldmodels.rollouts import episode_paths, held_out, read_episode

GAME = "doom_takecover"


class Right(NoOp):
    def __call__(self, obs, index: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(index), 1)


class Sweep:
    """+1 for ``period`` steps, then -1 for ``period``, and so on; ``Sweep.every(k)`` is
    the class of period k."""

    period = 20

    def __init__(self, n: int, low, high, rng=None):
        self.t = torch.zeros(n, dtype=torch.long)

    def __call__(self, obs, index: torch.Tensor) -> torch.Tensor:
        turn = (self.t[index] // self.period) % 2
        self.t[index] += 1
        return torch.where(turn == 0, 1.0, -1.0).unsqueeze(1)

    @classmethod
    def every(cls, period: int) -> type:
        return type(f"Sweep{period}", (cls,), {"period": period})


class StepUniform:
    def __init__(self, n: int, low, high, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, obs, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rng.uniform(-1, 1, (len(index), 1)).astype(np.float32))


class Snapped(HeldUniform):
    def __call__(self, obs, index: torch.Tensor) -> torch.Tensor:
        return DoomTakeCover.move(super().__call__(obs, index))


POLICIES = {
    "noop": NoOp,
    "right": Right,
    "sweep20": Sweep.every(20),
    "sweep100": Sweep.every(100),
    "step_uniform": StepUniform,
    "random": HeldUniform,
    "random_snapped": Snapped,
}


def flash_onsets(frames: np.ndarray) -> int:
    """Hits in a run of frames ``[T, 64, 64, 3]``: steps where the red flash comes on."""
    on = DoomTakeCover.flashed(frames)
    return int(on[0] + (on[1:] & ~on[:-1]).sum())


def real_hits(run_dir: str) -> tuple[int, int, int]:
    """(episodes, non-fatal hits, steps) of the run's held-out stored episodes."""
    paths = [p for p in episode_paths(f"{run_dir}/rollouts") if held_out(int(p.stem), 20)]
    hits = steps = 0
    for path in paths:
        obs = read_episode(path)["obs"]
        hits, steps = hits + flash_onsets(obs), steps + len(obs)
    return len(paths), hits, steps


@torch.no_grad()
def dream_hits(run_dir: str, n: int, seed: int) -> tuple[int, int, int]:
    """(dreams, non-fatal hits, steps) of the data policy in n dreams at tau 1.0."""
    dream, vae = Dream.from_run_dir(run_dir, temperature=1.0), load_vae(run_dir)
    gen = torch.Generator().manual_seed(seed)
    policy = HeldUniform(n, [-1.0], [1.0], np.random.default_rng(seed))
    state, alive, frames = dream.reset(n, gen), torch.arange(n), [[] for _ in range(n)]
    while len(alive):
        decoded = vae.decode(state.z).permute(0, 2, 3, 1).mul(255).numpy()
        for k, i in enumerate(alive.tolist()):
            frames[i].append(decoded[k].mean((0, 1)))  # mean colour is all the detector needs
        state, _, terminated, truncated = dream.step(state, policy(None, alive), gen)
        running = ~(terminated | truncated)
        state, alive = state.select(running), alive[running]
    hits = sum(flash_onsets(np.array(f)[:, None, None, :]) for f in frames)
    return n, hits, sum(len(f) for f in frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a DoomTakeCover run directory with V, latents and M")
    parser.add_argument("--episodes", type=int, default=60, help="real episodes per policy")
    parser.add_argument("--dreams", type=int, default=400, help="dreams per policy and setting")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env_kwargs = run_env(args.run_dir)
    dreams = {
        (done, tau): Dream.from_run_dir(args.run_dir, temperature=tau, done=done)
        for tau in (1.0, 1.15)
        for done in DONE_MODES
    }
    print(f"mean survival (steps): real over {args.episodes} episodes, dream over "
          f"{args.dreams}; in brackets dream / real")  # fmt: skip
    for name, policy in POLICIES.items():
        real = real_lengths(GAME, policy, args.episodes, args.seed, **env_kwargs)[0].mean()
        line = f"{name:14s} real {real:6.1f}"
        for (done, tau), dream in dreams.items():
            mean = dream_lengths(dream, GAME, policy, args.dreams, args.seed)[0].mean()
            line += f" | {done} {tau}: {mean:6.1f} ({mean / real:.2f})"
        print(line, flush=True)
    if env_kwargs.get("screen_flashes"):
        worlds = {"real": real_hits(args.run_dir),
                  "dream": dream_hits(args.run_dir, args.dreams, args.seed)}  # fmt: skip
        for world, (n, hits, steps) in worlds.items():
            print(
                f"data policy, {world}: {n} episodes, {hits / n:.2f} non-fatal hits each, "
                f"{100 * (hits + n) / steps:.2f} hits per 100 steps, the fatal one included"
            )


if __name__ == "__main__":
    main()
