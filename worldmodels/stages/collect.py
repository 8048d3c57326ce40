"""Stage ``collect``: episodes of a random policy in the real game (paper Sec. 3.1, 4.1).

Episodes are played by the rollout executor (``worldmodels.executor``: worker processes,
default one per core, or a Ray cluster), each episode seeded from (experiment seed,
episode index) so any one can be regenerated on its own, whoever plays it. Each is
written as it arrives (``rollouts.write_episode``: temporary name, then rename), so a
rerun skips the episodes already on disk and a killed collection resumes.
``rollouts/meta.json`` records what the episodes are; a directory holding episodes of
another game, frame size, seed or policy is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from worldmodels.envs import (
    FRAME_SHAPE,
    game_settings,
    get_game,
    make_env,
    policy_settings,
    recorded_settings,
)
from worldmodels.executor import Work, executor
from worldmodels.files import remove_stale_temporaries, write_json
from worldmodels.rollouts import encode_episode, episode_path, episode_paths, write_episode

META = "meta.json"
MAX_ATTEMPTS = 100


@dataclass
class CollectConfig:
    """Settings of the random-rollout collection."""

    limits: ClassVar[dict[str, str]] = {
        "episodes": ">= 1", "workers": ">= 0", "min_length": ">= 0",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    game: str = "doom_takecover"
    """Registry name of the game (``worldmodels.envs.GAMES``)."""
    episodes: int = 10_000
    """Number of episodes to have on disk (the paper used about 10,000 per game)."""
    seed: int = 0
    """Experiment seed; episode i is played from (seed, i)."""
    workers: int | None = None
    """Workers playing episodes (``runtime.backend``): None means one per core (or the Ray
    cluster's CPUs), 0 plays in this process."""
    min_length: int | None = None
    """Redraw episodes of at most this many steps; None takes the game's default
    (Doom: 100, as the original kept only episodes longer than 100 frames)."""
    env: dict = field(default_factory=dict)
    """Keyword arguments of the game's env, e.g. ``{"skill": 5}`` for Doom."""
    policy: dict = field(default_factory=dict)
    """Keyword arguments of the game's data policy, e.g. ``{"max_hold": 50}`` for Doom
    (actions held for 1-50 steps; empty: the paper's 1-10; ``[10, 50]``: each episode
    one of the two)."""


def collect(config: CollectConfig, out_dir: str | os.PathLike) -> dict:
    """Make sure ``config.episodes`` episodes exist in ``out_dir``; return counts and speed."""
    out_dir = Path(out_dir)
    game = get_game(config.game)
    min_length = game.min_length if config.min_length is None else config.min_length
    _claim_directory(out_dir, config, min_length)
    remove_stale_temporaries(out_dir)
    todo = [i for i in range(config.episodes) if not episode_path(out_dir, i).exists()]
    start, frames = time.perf_counter(), 0
    bar = tqdm(
        total=config.episodes,
        initial=config.episodes - len(todo),
        unit="ep",
        desc=f"collect {config.game}",
        dynamic_ncols=True,
    )

    def write(i: int, played: tuple[bytes, int]) -> int:
        nonlocal frames
        data, length = played
        write_episode(episode_path(out_dir, todo[i]), data)
        frames += length
        bar.update(1)
        bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - start):.0f}")
        return length

    work = Work(config.game, make_env, (config.game,), _play, _name, config.env)
    jobs = [(config.game, config.seed, index, min_length, config.policy) for index in todo]
    with bar:
        executor(config.workers).map(work, jobs, write)
    elapsed = time.perf_counter() - start
    return {
        "episodes": len(episode_paths(out_dir)),
        "new_episodes": len(todo),
        "new_frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / max(elapsed, 1e-9),
    }


def _play(env, job: tuple) -> tuple[bytes, int]:
    """Play one episode where the worker is; return its file's bytes and its length (the
    driver writes the file, so workers need no access to the run directory)."""
    game_name, *args = job
    episode = play_episode(env, get_game(game_name), *args)
    return encode_episode(episode), len(episode["obs"])


def _name(job: tuple) -> str:
    return f"episode {job[2]} (experiment seed {job[1]})"


def play_episode(
    env, game, seed: int, index: int, min_length: int = 0, policy: dict | None = None
) -> dict[str, np.ndarray]:
    """Play episode ``index`` of experiment ``seed`` with the game's random policy (made
    with the keyword arguments ``policy``).

    Attempt j plays from the seed sequence (seed, index, j); episodes of at most
    ``min_length`` steps are redrawn, so the result depends on (seed, index) only.
    """
    for attempt in range(MAX_ATTEMPTS):
        seq = np.random.SeedSequence([seed, index, attempt])
        env_seed = int(seq.generate_state(1)[0] & 0x7FFFFFFF)
        act = game.random_policy(np.random.default_rng(seq.spawn(1)[0]), **(policy or {}))
        episode = _rollout(env, act, env_seed)
        if len(episode["obs"]) > min_length:
            return episode
    raise RuntimeError(
        f"episode {index}: {MAX_ATTEMPTS} attempts all ended within {min_length} steps"
    )


def _rollout(env, policy, env_seed: int) -> dict[str, np.ndarray]:
    frame, _ = env.reset(seed=env_seed)
    steps = {"obs": [], "action": [], "reward": [], "terminated": [], "truncated": []}
    done = False
    while not done:
        action = policy(frame)
        next_frame, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(steps, (frame, action, reward, terminated, truncated), strict=True):
            steps[key].append(value)
        frame, done = next_frame, terminated or truncated
    return {
        "obs": np.stack(steps["obs"]),
        "action": np.stack(steps["action"]).astype(np.float32),
        "reward": np.asarray(steps["reward"], dtype=np.float32),
        "terminated": np.asarray(steps["terminated"], dtype=bool),
        "truncated": np.asarray(steps["truncated"], dtype=bool),
        "seed": np.int64(env_seed),
    }


def _claim_directory(out_dir: Path, config: CollectConfig, min_length: int) -> None:
    """Write meta.json, or refuse if the directory holds episodes of something else."""
    meta = {
        "game": config.game,
        "frame_shape": list(FRAME_SHAPE),
        "seed": config.seed,
        "min_length": min_length,
        "env": game_settings(config.game, **config.env),
        "policy": policy_settings(config.game, **config.policy),
        "action_dim": get_game(config.game).action_dim,
    }
    get_game(config.game).random_policy(np.random.default_rng(0), **meta["policy"])  # bad values
    meta_path = out_dir / META
    if meta_path.exists():
        try:
            found = json.loads(meta_path.read_text())
        except ValueError as e:
            raise ValueError(f"{meta_path} is not valid JSON ({e}); move it away") from e
        if found.get("game") == config.game:
            found["env"] = recorded_settings(config.game, found.get("env", {}))
            # recorded since the data policy took settings; before, it had its defaults
            found["policy"] = policy_settings(config.game, **found.get("policy", {}))
        for key, value in meta.items():
            if found.get(key) != value:
                raise ValueError(
                    f"{out_dir} holds episodes with {key}={found.get(key)!r}, this collection "
                    f"has {key}={value!r}; use another directory rather than mixing them"
                )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    if episode_paths(out_dir):
        raise ValueError(f"{out_dir} holds episodes but no {META}; use another directory")
    write_json(meta_path, meta)


def summary(run_dir: Path) -> list[str]:
    """How many episodes of which game and data policy, as Markdown."""
    path = run_dir / "rollouts" / META
    if not path.exists():
        return []
    meta = json.loads(path.read_text())
    count = len(episode_paths(run_dir / "rollouts"))
    return ["## Data", "", f"{count} episodes of {meta['game']}, data policy "
            f"{meta.get('policy', {})}, game settings {meta.get('env', {})}"]  # fmt: skip
