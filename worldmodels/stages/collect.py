"""Stage ``collect``: episodes of a random policy in the real game (paper Sec. 3.1, 4.1).

Episodes are played in worker processes (default: one per core), each episode seeded
from (experiment seed, episode index) so any one can be regenerated on its own, and
written by the worker as it finishes (``rollouts.write_episode``: temporary name, then
rename). A rerun skips the episodes already on disk, so a killed collection resumes.
``rollouts/meta.json`` records what the episodes are; a directory holding episodes of
another game, frame size, seed or policy is refused rather than mixed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
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
from worldmodels.files import remove_stale_temporaries, write_json
from worldmodels.rollouts import episode_path, episode_paths, write_episode
from worldmodels.runtime import resolve_workers

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
    """Worker processes; None means one per core, 0 plays in this process."""
    min_length: int | None = None
    """Redraw episodes of at most this many steps; None takes the game's default
    (Doom: 100, as the original kept only episodes longer than 100 frames)."""
    env: dict = field(default_factory=dict)
    """Keyword arguments of the game's env, e.g. ``{"skill": 5}`` for Doom."""
    policy: dict = field(default_factory=dict)
    """Keyword arguments of the game's data policy, e.g. ``{"max_hold": 50}`` for Doom
    (actions held for 1-50 steps; empty: the paper's 1-10)."""


def collect(config: CollectConfig, out_dir: str | os.PathLike) -> dict:
    """Make sure ``config.episodes`` episodes exist in ``out_dir``; return counts and speed."""
    out_dir = Path(out_dir)
    game = get_game(config.game)
    min_length = game.min_length if config.min_length is None else config.min_length
    _claim_directory(out_dir, config, min_length)
    remove_stale_temporaries(out_dir)
    todo = [i for i in range(config.episodes) if not episode_path(out_dir, i).exists()]
    workers = resolve_workers(config.workers)
    start, frames = time.perf_counter(), 0
    bar = tqdm(
        total=config.episodes,
        initial=config.episodes - len(todo),
        unit="ep",
        desc=f"collect {config.game}",
        dynamic_ncols=True,
    )
    with bar:
        worker_args = (config.game, config.env)
        episode_args = (str(out_dir), config.seed, min_length, config.policy)
        for length in _play(todo, worker_args, episode_args, workers):
            frames += length
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - start):.0f}")
    elapsed = time.perf_counter() - start
    return {
        "episodes": len(episode_paths(out_dir)),
        "new_episodes": len(todo),
        "new_frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / max(elapsed, 1e-9),
    }


def _play(todo: list[int], worker_args: tuple, episode_args: tuple, workers: int):
    """Yield the length of each episode in ``todo`` as it is written.

    ``worker_args`` make a worker's env (once per worker), ``episode_args`` follow the
    episode index in every ``_write_one`` call. ``workers=0`` plays in this process.
    """
    if workers == 0:
        _init_worker(*worker_args)
        try:
            for index in todo:
                yield _write_one(index, *episode_args)
        finally:
            _close_worker()
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=worker_args
    )
    try:
        futures = [pool.submit(_write_one, index, *episode_args) for index in todo]
        for future in as_completed(futures):
            yield future.result()
    except BrokenProcessPool as e:
        raise RuntimeError(
            "a collection worker died; the episodes written so far are kept, rerun to resume"
        ) from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_ENV = None  # one env per worker process, made once by _init_worker


def _init_worker(game_name: str, env_kwargs: dict) -> None:
    global _ENV
    _ENV = (get_game(game_name), make_env(game_name, **env_kwargs))


def _close_worker() -> None:
    global _ENV
    _ENV[1].close()
    _ENV = None


def _write_one(index: int, out_dir: str, seed: int, min_length: int, policy: dict) -> int:
    game, env = _ENV
    episode = play_episode(env, game, seed, index, min_length, policy)
    write_episode(episode_path(out_dir, index), episode)
    return len(episode["obs"])


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
