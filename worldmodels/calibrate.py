"""Is the dream calibrated? Fixed simple policies, scored in the real game and in the dream.

A dream in which the random policy lives five times longer than in the real game is a
dream whose high scores mean nothing. Blind policies (they ignore what they see) are
played N episodes each in both worlds, with fixed seeds; by default two:

- ``noop``: always the zero action (Doom: stand still; CarRacing: no gas, no steering);
- ``random``: a uniform action in [-1, 1] (gas and brake in [0, 1] for CarRacing) held
  for 1-10 steps (``envs.HeldUniform``: the paper's data policy for Doom).

A blind policy is a class made as ``Policy(n, low, high, rng)`` for n dreams (one real
episode: n = 1; ``rng`` a numpy Generator) whose instances map ``(obs, index)`` to
actions ``[len(index), A]``,
as ``Dream.rollout`` asks; ``analysis/doom_dream_policies.py`` brings seven. The mean
episode lengths (and returns) of both worlds go to calibration/results.json (stage
``calibrate``).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

from worldmodels.dream import DONE_MODES, Dream
from worldmodels.envs import HeldUniform, get_game, make_env
from worldmodels.executor import Work, executor


class NoOp:
    """The zero action, always."""

    def __init__(self, n: int, low, high, rng: np.random.Generator | None = None):
        self.action_dim = len(low)

    def __call__(self, obs, index: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(index), self.action_dim)


POLICIES = {"noop": NoOp, "random": HeldUniform}


def _bounds(space) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of a Box action space, as float32 tensors."""
    return tuple(torch.from_numpy(x.astype(np.float32)) for x in (space.low, space.high))


@functools.cache  # starting a game only to read its action space: once per game
def action_range(game_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the game's action space."""
    env = make_env(game_name)
    bounds = _bounds(env.action_space)
    env.close()
    return bounds


def real_lengths(
    game_name: str, policy: type, episodes: int, seed: int = 0, workers: int | None = 0, **env
):
    """(lengths, returns) of blind ``policy`` in the real game; episode i is seeded (game
    and policy) from (seed, i). Played by the rollout executor with ``workers`` workers
    (0: in this process)."""
    return real_lengths_of([policy], game_name, episodes, seed, workers, **env)[0]


def real_lengths_of(
    policies: list[type], game_name: str, episodes: int, seed: int = 0, workers=0, **env
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``real_lengths`` of several policies, played as one batch."""
    work = Work(game_name, make_env, (game_name,), _play_blind, _name, env)
    jobs = [(policy, seed, i) for policy in policies for i in range(episodes)]
    played = executor(workers).map(work, jobs)
    out = []
    for k in range(len(policies)):
        lengths, returns = zip(*played[k * episodes : (k + 1) * episodes], strict=True)
        out.append((np.array(lengths), np.array(returns)))
    return out


def _play_blind(env, job: tuple) -> tuple[int, float]:
    policy, seed, i = job
    rng = np.random.default_rng([seed, i])
    env_seed = int(rng.integers(2**31))
    return play_blind(env, policy, env_seed, np.random.default_rng(int(rng.integers(2**62))))


def play_blind(env, policy: type, env_seed: int, rng: np.random.Generator) -> tuple[int, float]:
    """(length, return) of blind ``policy`` (made with ``rng``) in the episode of ``env_seed``."""
    low, high = _bounds(env.action_space)
    env.reset(seed=env_seed)
    act = policy(1, low, high, rng)
    total, steps, done, only = 0.0, 0, False, torch.zeros(1, dtype=torch.long)
    while not done:
        _, reward, terminated, truncated, _ = env.step(act(None, only)[0].numpy())
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return steps, total


def _name(job: tuple) -> str:
    policy, seed, i = job
    return f"calibration episode {i} of {policy.__name__} (seed {seed})"


def dream_lengths(dream: Dream, game_name: str, policy: type, episodes: int, seed: int = 0):
    """(lengths, returns) of blind ``policy`` in ``episodes`` dreams, as one batch."""
    gen = torch.Generator().manual_seed(seed)
    act = policy(episodes, *action_range(game_name), np.random.default_rng(seed))
    returns, lengths = dream.rollout(act, episodes, gen)
    return lengths.numpy(), returns.numpy()


def calibrate(
    dream: Dream,
    game_name: str,
    episodes: int = 100,
    seed: int = 0,
    env: dict | None = None,
    policies: dict[str, type] = POLICIES,
    workers: int | None = 0,
) -> dict:
    """Mean and std of episode length and return of each policy in both worlds.

    ``env``: the game's settings (``collect.env``) for the real episodes, played by
    ``workers`` workers of the rollout executor (0: in this process).

    The dream is scored with its own done rule (``dream_*``) and also with the other one
    (``dream_logit_*`` or ``dream_sample_*``), to choose ``controller.done`` by.
    """
    other = copy.copy(dream)
    other.done_mode = next(m for m in DONE_MODES if m != dream.done_mode)
    result = {}
    real = real_lengths_of(list(policies.values()), game_name, episodes, seed, workers,
                           **(env or {}))  # fmt: skip
    for (name, policy), in_game in zip(policies.items(), real, strict=True):
        worlds = {
            "real": in_game,
            "dream": dream_lengths(dream, game_name, policy, episodes, seed),
            f"dream_{other.done_mode}": dream_lengths(other, game_name, policy, episodes, seed),
        }
        result[name] = {
            f"{world}_{measure}_{stat}": float(fn(values))
            for world, (lengths, returns) in worlds.items()
            for measure, values in (("length", lengths), ("return", returns))
            for stat, fn in (("mean", np.mean), ("std", np.std))
        }
    result["policies"] = list(policies)
    result["done"] = dream.done_mode
    result["temperature"] = dream.temperature
    result["episodes"] = episodes
    result["game"] = game_name
    return result


def report(result: dict) -> str:
    done = result.get("done", "logit")
    other = next(m for m in DONE_MODES if m != done)
    lines = [f"calibration at temperature {result['temperature']}, {result['episodes']} episodes "
             f"(dream: done by {done}; in brackets by {other}):"]  # fmt: skip
    policies = result.get("policies", list(POLICIES))
    width = max(map(len, policies))
    for policy in policies:
        r = result[policy]
        line = (
            f"  {policy:{width}s} mean length real {r['real_length_mean']:7.1f} +- "
            f"{r['real_length_std']:.0f}   dream {r['dream_length_mean']:7.1f} +- "
            f"{r['dream_length_std']:.0f}"
        )
        if f"dream_{other}_length_mean" in r:
            mean, std = r[f"dream_{other}_length_mean"], r[f"dream_{other}_length_std"]
            line += f" ({mean:.1f} +- {std:.0f})"
        if not survival(result):  # the return is the game's reward, not the length
            line += (f"; mean return real {r['real_return_mean']:.1f} +- "
                     f"{r['real_return_std']:.0f}   dream {r['dream_return_mean']:.1f} +- "
                     f"{r['dream_return_std']:.0f}")  # fmt: skip
        lines.append(line)
    return "\n".join(lines)


def survival(result: dict) -> bool:
    """Whether the calibrated game's return is its length (Doom; results without a game
    were all Doom's)."""
    return get_game(result.get("game", "doom_takecover")).survival
