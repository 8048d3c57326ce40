"""Stage ``evaluate``: the best controller in the real game (paper Sec. 3.4 and 4.5).

Reads controller/best.pt, the world model and rollouts/meta.json (those of the last
round of iterative training, ``rounds/<r>/``, if the iterate stage ran any). Writes
evaluate/results.json and evaluate/episode.mp4.

Scores controller/best.pt over N real episodes (seeds fixed and recorded, worker
processes in parallel), the game's random data policy on the same seeds, and the same
controller in the dream. All three land side by side in evaluate/results.json, because a
dream score far above the real one means the controller exploits flaws of the model.
evaluate/episode.mp4 shows one episode: the real frame, V's reconstruction, and the frame
M predicted for that step.

With ``rank_episodes``, it also checks that the dream ranks controllers as the real game
does: the CMA-ES means of ``rank_means`` generations, evenly spaced from the first to the
last (controllers of rising quality), and the calibration's blind policies (no-op,
random) are scored in the dream and in ``rank_episodes`` real episodes each, and
Spearman's rank correlation of the two lands in results.json under ``rank``. In a dream
that ranks them well (near 1), a higher dream score means a better controller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from worldmodels.agent import Agent, play_episodes
from worldmodels.artifacts import agent_dir, read_results, run_env, run_game
from worldmodels.calibrate import POLICIES, dream_lengths, real_lengths_of
from worldmodels.dream import Dream
from worldmodels.files import atomic_path, write_json
from worldmodels.stages.controller import (
    cma_means,
    dream_fitness,
    episode_seeds,
    load_controller,
)


@dataclass
class EvaluateConfig:
    limits: ClassVar[dict[str, str]] = {
        "episodes": ">= 1", "dream_episodes": ">= 1", "temperature": "> 0",
        "done": "logit sample", "workers": ">= 0", "rank_episodes": ">= 0", "rank_means": ">= 1",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""
    episodes: int = 100
    """Real-game episodes (the paper's 100)."""
    dream_episodes: int = 1024
    """Dreams the controller is also scored in."""
    temperature: float = 1.15
    """Temperature of the dream score."""
    done: str = "logit"
    """The dream score's done rule ("logit" or "sample"), as ``controller.done``."""
    workers: int | None = None
    """Worker processes for the real episodes; None: one per core."""
    rank_episodes: int = 0
    """Real episodes scoring each ranked controller (CMA-ES means and blind policies),
    for the rank correlation of dream and real returns (0: not measured)."""
    rank_means: int = 10
    """CMA-ES means ranked, from generations evenly spaced from the first to the last."""
    video: bool = True
    """Write evaluate/episode.mp4 (real frame, V's reconstruction, M's prediction)."""
    seed: int = 12345
    """Env seeds are drawn from this; they are written to results.json."""


def statistics(scores: np.ndarray) -> dict:
    return {"mean": float(scores.mean()), "std": float(scores.std()), "min": float(scores.min()),
            "max": float(scores.max()), "scores": scores.tolist()}  # fmt: skip


def evaluate(config: EvaluateConfig, run_dir: str | os.PathLike) -> dict:
    out, run_dir = Path(run_dir) / "evaluate", agent_dir(run_dir)  # the final agent's
    dream = Dream.from_run_dir(run_dir, temperature=config.temperature, done=config.done)
    controller, params = load_controller(run_dir)
    if controller.obs_size != dream.obs_size:
        raise ValueError(f"controller/best.pt takes inputs of size {controller.obs_size}, this "
                         f"run's world model gives {dream.obs_size}")  # fmt: skip
    seeds = episode_seeds(config.seed, 0, config.episodes)
    rank = config.rank_episodes and (run_dir / "controller" / "es_state.json").exists()
    if config.rank_episodes and not rank:
        print(f"evaluate: no CMA-ES history in {run_dir / 'controller'} (a pretrained agent "
              "ships without it), so no rank check")  # fmt: skip
    means = cma_means(run_dir, config.rank_means) if rank else []
    rank_seeds = episode_seeds(config.seed, 1, config.rank_episodes)
    jobs = [(params, s) for s in seeds] + [(None, s) for s in seeds]  # one batch: C, random,
    jobs += [(p, s) for _, p in means for s in rank_seeds]  # and the CMA-ES means
    played, _ = play_episodes(run_dir, jobs, config.workers, controller.spec)
    real, random = played[: len(seeds)], played[len(seeds) : 2 * len(seeds)]
    in_dream = dream_fitness(dream, controller, config.dream_episodes, config.seed)
    dream_mean = float(in_dream(params[None], 0)[0])
    results = {
        "real": statistics(real), "random_policy": statistics(random),
        "dream": {"mean": dream_mean, "episodes": config.dream_episodes,
                  "temperature": config.temperature, "done": config.done},
        "seeds": seeds,
    }  # fmt: skip
    if rank:
        means_real = played[2 * len(seeds) :].reshape(len(means), config.rank_episodes)
        results["rank"] = rank_in_both_worlds(
            run_dir, dream, means, means_real.mean(1), in_dream, config
        )
    write_json(out / "results.json", results)
    if config.video:
        agent = Agent.from_run_dir(run_dir, controller.spec)
        write_video(agent, params, seeds[0], out / "episode.mp4")
    print(
        f"evaluate: real {real.mean():.1f} +- {real.std():.1f} over {len(seeds)} episodes; "
        f"random policy {random.mean():.1f} +- {random.std():.1f}; dream {dream_mean:.1f}\n"
        f"evaluate: {verdict(real.mean(), random.mean(), dream_mean)}"
    )
    if "rank" in results:
        rank = results["rank"]
        print(f"evaluate: the dream ranks {len(rank['controllers'])} controllers with Spearman "
              f"rho {rank['spearman']:.2f} against the real game")  # fmt: skip
    return results


def rank_in_both_worlds(
    run_dir: Path, dream: Dream, means: list, means_real: np.ndarray, in_dream, config
) -> dict:
    """Dream and real returns of the CMA-ES means (their real returns given) and of the
    blind policies, and Spearman's rho between the two worlds."""
    game = run_game(run_dir)
    means_dream = in_dream(np.stack([p for _, p in means]), 1)
    rows = [{"name": f"CMA-ES mean, generation {g}", "dream": float(d), "real": float(r)}
            for (g, _), d, r in zip(means, means_dream, means_real, strict=True)]  # fmt: skip
    blind = real_lengths_of(list(POLICIES.values()), game, config.rank_episodes, config.seed,
                            config.workers, **run_env(run_dir))  # fmt: skip
    for (name, policy), (_, real_returns) in zip(POLICIES.items(), blind, strict=True):
        _, dream_returns = dream_lengths(dream, game, policy, config.dream_episodes, config.seed)
        rows.append({"name": f"{name} policy", "dream": float(dream_returns.mean()),
                     "real": float(real_returns.mean())})  # fmt: skip
    dream_returns, real_returns = ([row[k] for row in rows] for k in ("dream", "real"))
    return {"controllers": rows, "spearman": spearman(dream_returns, real_returns),
            "episodes": config.rank_episodes}  # fmt: skip


def ranks(values) -> np.ndarray:
    """1-based ranks of ``values``, ties given the mean of the ranks they share."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties averaged);
    nan when either side is constant."""
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


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


TRANSFERS = 2.0
"""A controller "transfers" when its real-game mean is at least this multiple of the random
policy's on the same seeds."""


def verdict(real: float, random: float, dream: float) -> str:
    """One line: did what CMA-ES found in the dream carry over to the real game?"""
    ratio = real / random if random > 0 else float("inf")
    if ratio >= TRANSFERS:
        return f"the controller transfers: {ratio:.2f}x the random policy in the real game"
    if ratio > 1.1:
        return (f"the controller partly transfers: {ratio:.2f}x the random policy in the real "
                f"game (dream {dream:.0f}, real {real:.0f})")  # fmt: skip
    return (f"the controller does not transfer: {ratio:.2f}x the random policy; it exploits "
            f"the dream (dream {dream:.0f}, real {real:.0f})")  # fmt: skip


def headline(run_dir: Path) -> str:
    """The verdict of a run directory's evaluation ("" if it has none)."""
    r = read_results(run_dir, "evaluate")
    if not r:
        return ""
    return verdict(r["real"]["mean"], r["random_policy"]["mean"], r["dream"]["mean"])


def summary(run_dir: Path) -> list[str]:
    """The three scores as Markdown."""
    r = read_results(run_dir, "evaluate")
    if not r:
        return []
    real, random, dream = r["real"], r["random_policy"], r["dream"]
    return ["## Scores", "", "| | mean | std |", "|---|---|---|",
            f"| real game ({len(r['seeds'])} episodes) | {real['mean']:.1f} | {real['std']:.1f} |",
            f"| random policy, same seeds | {random['mean']:.1f} | {random['std']:.1f} |",
            f"| dream (tau {dream['temperature']}) | {dream['mean']:.1f} | |",
            *rank_summary(r.get("rank"))]  # fmt: skip


def rank_summary(rank: dict | None) -> list[str]:
    """Every ranked controller's dream and real return, and Spearman's rho, as Markdown."""
    if not rank:
        return []
    return ["", f"### Does the dream rank controllers as the game does? Spearman rho "
            f"{rank['spearman']:.2f}", "",
            f"| controller | dream | real game ({rank['episodes']} episodes) |", "|---|---|---|",
            *(f"| {c['name']} | {c['dream']:.1f} | {c['real']:.1f} |"
              for c in rank["controllers"])]  # fmt: skip
