"""Stage ``evaluate``: the best controller in the real game (paper Sec. 3.4 and 4.5).

Scores controller/best.pt over N real episodes (seeds fixed and recorded, worker
processes in parallel), the game's random data policy on the same seeds, and the same
controller in the dream. All three land side by side in evaluate/results.json, because a
dream score far above the real one means the controller exploits flaws of the model.
evaluate/episode.mp4 shows one episode: the real frame, V's reconstruction, and the frame
M predicted for that step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worldmodels.agent import Agent, play_episodes
from worldmodels.controller_stage import (
    ControllerConfig,
    dream_fitness,
    episode_seeds,
    load_controller,
)
from worldmodels.dream import Dream
from worldmodels.files import atomic_path, write_json
from worldmodels.runtime import resolve_workers


@dataclass
class EvaluateConfig:
    episodes: int = 100
    """Real-game episodes (the paper's 100)."""
    dream_episodes: int = 1024
    temperature: float = 1.15
    """Temperature of the dream score."""
    done: str = "logit"
    """The dream score's done rule ("logit" or "sample"), as ``controller.done``."""
    workers: int | None = None
    video: bool = True
    seed: int = 12345
    """Env seeds are drawn from this; they are written to results.json."""


def summary(scores: np.ndarray) -> dict:
    return {"mean": float(scores.mean()), "std": float(scores.std()), "min": float(scores.min()),
            "max": float(scores.max()), "scores": scores.tolist()}  # fmt: skip


def evaluate(config: EvaluateConfig, run_dir: str | os.PathLike) -> dict:
    run_dir, out = Path(run_dir), Path(run_dir) / "evaluate"
    dream = Dream.from_run_dir(run_dir, temperature=config.temperature, done=config.done)
    controller, params = load_controller(run_dir)
    if controller.obs_size != dream.obs_size:
        raise ValueError(f"controller/best.pt takes inputs of size {controller.obs_size}, this "
                         f"run's world model gives {dream.obs_size}")  # fmt: skip
    workers = resolve_workers(config.workers)
    seeds = episode_seeds(config.seed, 0, config.episodes)
    real, _ = play_episodes(run_dir, [(params, s) for s in seeds], workers)
    random, _ = play_episodes(run_dir, [(None, s) for s in seeds], workers)
    in_dream = dream_fitness(dream, controller, ControllerConfig(episodes=config.dream_episodes,
                                                                 seed=config.seed))  # fmt: skip
    dream_mean = float(in_dream(params[None], 0)[0])
    results = {
        "real": summary(real), "random_policy": summary(random),
        "dream": {"mean": dream_mean, "episodes": config.dream_episodes,
                  "temperature": config.temperature, "done": config.done},
        "seeds": seeds,
    }  # fmt: skip
    write_json(out / "results.json", results)
    if config.video:
        write_video(Agent(run_dir), params, seeds[0], out / "episode.mp4")
    print(
        f"evaluate: real {real.mean():.1f} +- {real.std():.1f} over {len(seeds)} episodes; "
        f"random policy {random.mean():.1f} +- {random.std():.1f}; dream {dream_mean:.1f}"
    )
    return results


def write_video(agent: Agent, params: np.ndarray, seed: int, path: Path, scale: int = 4) -> None:
    """MP4 of one real episode: real frame | V's reconstruction | M's prediction."""
    frames = agent.play(params, seed, record=True)["frames"]
    height, width = frames[0].shape[0] * scale, frames[0].shape[1] * scale
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp) + ".mp4", cv2.VideoWriter_fourcc(*"mp4v"), 35,
                                 (width, height))  # fmt: skip
        for frame in frames:
            big = cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST)
            writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(str(tmp) + ".mp4", tmp)  # OpenCV picks the container by extension
