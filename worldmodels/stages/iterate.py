"""Stage ``iterate``: the paper's iterative training (Sec. 5): rounds of real episodes
played by the current controller with random exploration, M trained again on every
episode so far, and C evolved again in the new dream.

The random data policy rarely does what a good controller does, so the first dream is
least faithful where the controller goes (DoomTakeCover: sweeping from wall to wall).
Each round plays ``episodes`` real episodes with the latest controller, where at each
step, with probability ``explore``, the game's data policy (``collect.policy``) takes over
for 1 to ``hold`` steps; V encodes them where they are played (the workers return
latents, no frames are stored). Then M and C are trained from scratch with the
experiment's own ``mdnrnn`` and ``controller`` settings, M on the collected episodes and
every round's so far.

Round r lives in ``rounds/<r>/``, laid out as a run directory of its own (so ``report``,
``evaluate``, ``calibrate`` and ``export`` take it as ``run_dir``): ``rollouts`` and
``vae`` link to the run's, ``latents/`` links to the run's latents and to the episodes of
rounds 1..r (each round's own in ``rounds/<r>/played/``), and ``mdnrnn/`` and
``controller/`` are its own. ``rounds/results.json`` names the last finished round,
whose agent the evaluate stage plays (``artifacts.agent_dir``). With ``rounds: 0`` (the
default) the stage does nothing. Every round resumes: its played episodes are written
as they arrive, M and C resume from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from worldmodels.agent import Agent, agent_work
from worldmodels.artifacts import ROUNDS, agent_dir, read_results
from worldmodels.executor import executor
from worldmodels.files import write_json
from worldmodels.rollouts import episode_path, episode_paths
from worldmodels.stages.controller import episode_seeds, load_controller
from worldmodels.stages.encode import write_latents

LINKED = ("rollouts", "vae")  # a round's folders that are the run's own


@dataclass
class IterateConfig:
    """Settings of the iterative training (rounds of controller episodes, M, C)."""

    limits: ClassVar[dict[str, str]] = {
        "rounds": ">= 0", "episodes": ">= 1", "explore": ">= 0, <= 1", "hold": ">= 1",
        "workers": ">= 0",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    rounds: int = 0
    """Rounds of collect-train-evolve after the first controller (0: none)."""
    episodes: int = 500
    """Real episodes played by the controller in each round."""
    explore: float = 0.01
    """Chance, at each step, that the data policy takes over (for 1 to ``hold`` steps)."""
    hold: int = 50
    """Longest stretch of steps the data policy plays when it takes over."""
    seed: int = 0
    """Seeds of the rounds' real episodes and their exploration."""
    workers: int | None = None
    """Workers playing the episodes (``runtime.backend``): None means one per core (or
    the Ray cluster's CPUs), 0 plays in this process."""


def iterate(config: IterateConfig, run_dir: str | os.PathLike) -> dict:
    """Play, train and evolve ``config.rounds`` rounds (each skipped if done); write
    rounds/results.json and return it."""
    from worldmodels.config import load_config  # the stage registry is imported by config

    run_dir = Path(run_dir)
    if not config.rounds:
        return {"rounds": []}
    experiment = load_config(str(run_dir / "config.yaml"))
    results = {"rounds": read_results(run_dir, ROUNDS).get("rounds", [])[: config.rounds]}
    for r in range(len(results["rounds"]) + 1, config.rounds + 1):
        print(f"== iterate: round {r} of {config.rounds} ==", flush=True)
        results["rounds"].append(play_train_evolve(config, experiment, run_dir, r))
        results["final"] = f"{ROUNDS}/{r}"
        write_json(run_dir / ROUNDS / "results.json", results)
    return results


def play_train_evolve(config: IterateConfig, experiment, run_dir: Path, r: int) -> dict:
    """Round r: the previous round's controller plays ``config.episodes`` episodes into
    rounds/<r>/played/; M and C are trained on everything so far in rounds/<r>/."""
    from worldmodels.pipeline import claim_run_dir, run_stage  # the pipeline runs this stage

    here = run_dir / ROUNDS / str(r)
    returns = play(config, experiment.collect.policy, run_dir, r)
    _lay_out(run_dir, r)
    round_config = dataclasses.replace(experiment, run_dir=str(here))
    claim_run_dir(round_config)
    for stage in ("mdnrnn", "controller"):
        run_stage(round_config, stage)
    kept = json.loads((here / "controller" / "es_state.json").read_text())["best"]
    return {
        "round": r,
        "episodes": len(returns),
        "played_return": float(np.mean(returns)),
        "z_nll_per_dim": read_results(here, "mdnrnn")["z_nll_per_dim"],
        "controller_dream": kept["dream"],
    }


def play(config: IterateConfig, policy: dict, run_dir: Path, r: int) -> list[float]:
    """Round r's episodes: the previous round's controller (round 1: the run's) with
    exploration, written to rounds/<r>/played/ as latents files as they arrive (numbered
    after the run's episodes and earlier rounds'); returns their returns."""
    agent_run = run_dir if r == 1 else run_dir / ROUNDS / str(r - 1)
    out = run_dir / ROUNDS / str(r) / "played"
    out.mkdir(parents=True, exist_ok=True)
    first = _first_index(run_dir, r, config.episodes)
    indices = range(first, first + config.episodes)
    seeds = episode_seeds(config.seed, 10_000 + r, config.episodes)
    controller, params = load_controller(agent_run)
    todo = [(i, s) for i, s in zip(indices, seeds, strict=True)
            if not episode_path(out, i).exists()]  # fmt: skip
    jobs = [(params, s, config.explore, config.hold, policy) for _, s in todo]
    bar = tqdm(total=config.episodes, initial=config.episodes - len(todo), unit="ep",
               desc=f"iterate: round {r}", dynamic_ncols=True)  # fmt: skip

    def write(j: int, episode: dict) -> None:
        write_latents(episode_path(out, todo[j][0]), episode)
        bar.update(1)

    work = agent_work(agent_run, controller.spec, _explore, _name)
    with bar:
        executor(config.workers).map(work, jobs, write)
    returns = []
    for path in episode_paths(out):
        with np.load(path) as npz:
            returns.append(float(npz["return"]))
    return returns


def _explore(agent: Agent, job: tuple) -> dict:
    return agent.explore(*job)


def _name(job: tuple) -> str:
    return f"a controller's exploring episode (env seed {job[1]})"


def _first_index(run_dir: Path, r: int, episodes: int) -> int:
    """Round r's first episode index: after the run's own episodes and rounds 1..r-1's."""
    base = max(int(p.stem) for p in episode_paths(run_dir / "latents")) + 1
    return base + (r - 1) * episodes


def _lay_out(run_dir: Path, r: int) -> None:
    """rounds/<r>/ as a run directory: links to the run's rollouts and V, and latents/
    linking to the run's latents and to every round's played episodes up to r."""
    here = run_dir / ROUNDS / str(r)
    for name in LINKED:
        link = here / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", name))
    latents = here / "latents"
    latents.mkdir(exist_ok=True)
    meta = json.loads((run_dir / "latents" / "meta.json").read_text())
    write_json(latents / "meta.json", meta)
    sources = [(Path("..", "..", "..", "latents"), run_dir / "latents")]
    sources += [(Path("..", "..", str(q), "played"), run_dir / ROUNDS / str(q) / "played")
                for q in range(1, r + 1)]  # fmt: skip
    for relative, folder in sources:
        for path in episode_paths(folder):
            link = latents / path.name
            if not link.is_symlink():
                link.symlink_to(relative / path.name)


def summary(run_dir: Path) -> list[str]:
    """One row per round as Markdown."""
    rounds = read_results(run_dir, ROUNDS).get("rounds", [])
    if not rounds:
        return []
    lines = ["## Iterative training", "",
             f"The evaluated agent is {agent_dir(run_dir).relative_to(run_dir)}'s.", "",
             "| round | episodes played | their return (with exploration) | M held-out NLL "
             "per dim | C's dream score |", "|---|---|---|---|---|"]  # fmt: skip
    for row in rounds:
        lines.append(f"| {row['round']} | {row['episodes']} | {row['played_return']:.1f} | "
                     f"{row['z_nll_per_dim']:.3f} | {row['controller_dream']:.1f} |")  # fmt: skip
    return lines
