"""Stage ``controller``: evolve C with CMA-ES (pycma), in the dream or the real game
(Ha & Schmidhuber, 2018, Sec. 3.3 and 4.4).

Each generation asks CMA-ES for ``popsize`` controllers and scores each by its mean
return over ``episodes`` episodes: in the dream, all popsize x episodes dreams run as
one batch (``Dream.rollout``); in the real game, spread over worker processes. Every
``eval_every`` generations the CMA-ES mean is scored on ``eval_episodes`` dreams (and,
if asked, real episodes); the best so far is controller/best.pt.

Resumption without pickle: pycma is deterministic for a fixed seed, so es_state.json
keeps only every generation's fitnesses (and a fingerprint of its candidates). A rerun
replays ask/tell through them, checks the fingerprints (up to rounding, so that another
BLAS thread count or CPU still resumes), and continues where the killed run stopped. The
same replay gives back the CMA-ES mean of any generation (``cma_means``): controllers of
rising quality, with which the evaluate stage checks that the dream ranks controllers as
the real game does. history.jsonl and history.png hold best/mean/worst/sigma/time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import cma
import numpy as np
import torch

from worldmodels.agent import play_episodes
from worldmodels.artifacts import run_game
from worldmodels.controller import Controller
from worldmodels.dream import Dream
from worldmodels.envs import get_game
from worldmodels.files import atomic_path, write_json

FITNESS = ("dream", "real")
SEARCH_KEYS = ("popsize", "sigma0", "seed", "fitness", "episodes", "temperature", "max_pedal",
               "repeat")  # fmt: skip
"""Settings a resumed search must share with the one it resumes."""


@dataclass
class ControllerConfig:
    """CMA-ES settings (defaults: the paper's) and where fitness comes from."""

    limits: ClassVar[dict[str, str]] = {
        "fitness": "dream real", "generations": ">= 1", "popsize": ">= 2", "sigma0": "> 0",
        "episodes": ">= 1", "temperature": "> 0", "done": "logit sample", "eval_every": ">= 1",
        "eval_episodes": ">= 1", "eval_real_episodes": ">= 0", "workers": ">= 0",
        "precision": "float32 bfloat16", "max_pedal": "> 0, <= 1", "repeat": ">= 1",
        "dream_start": ">= 0",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    fitness: str = "dream"
    """"dream" (batched, the paper's Doom setup) or "real" (workers, its CarRacing setup)."""
    generations: int = 200
    """CMA-ES generations."""
    popsize: int = 64
    """Candidates per generation (at least 2)."""
    sigma0: float = 0.1
    """CMA-ES's initial step size."""
    episodes: int = 16
    """Episodes per candidate; fitness is their mean return."""
    temperature: float = 1.15
    """tau of the dreams fitness is measured in."""
    done: str = "logit"
    """How a dream ends: "logit" (done logit > 0, the paper) or "sample"."""
    eval_every: int = 25
    """Generations between scorings of the CMA-ES mean (the best is kept)."""
    eval_episodes: int = 1024
    """Dream episodes scoring the CMA-ES mean every eval_every generations."""
    eval_real_episodes: int = 0
    """Real episodes scoring it too (0: none)."""
    workers: int | None = None
    """Worker processes for real-game episodes; None: one per core."""
    precision: str = "float32"
    """The dream's precision: float32 or bfloat16 (faster on CPUs with bf16 units)."""
    max_pedal: float = 1.0
    """CarRacing: the most gas and brake C can give (its squash scaled to [0, max_pedal]);
    0.5, the data policy's most gas, keeps it where the dream has seen data."""
    repeat: int = 1
    """C acts every ``repeat`` steps and holds its action in between (action repeat), in
    the dream and the game; 1: every step (the paper)."""
    dream_start: int = 0
    """The step of the stored episodes the dreams start from, M's state warmed up on the
    real steps before it (0: their first frames, the paper)."""
    device: str = "cpu"
    """Where the dreams run (cpu or a CUDA device)."""
    seed: int = 0
    """Seed of CMA-ES and of the dreams."""


def evolve(
    n_params: int,
    fitness: Callable[[np.ndarray, int], np.ndarray],
    config: ControllerConfig,
    out: Path,
    evaluate: Callable[[np.ndarray, int], dict] | None = None,
    save_best: Callable[[np.ndarray, dict], None] | None = None,
) -> dict:
    """Maximise ``fitness(candidates [P, n], generation) -> [P]`` with CMA-ES, resumably.

    ``evaluate(mean, generation) -> {"score": ..., ...}`` runs every ``eval_every``
    generations and at the end; whenever its score is the best so far,
    ``save_best(mean, best)`` is called, before the generation's state is saved.
    Returns the final state (generations done, best score, history).
    """
    if config.popsize < 2:
        raise ValueError(f"popsize must be >= 2 for CMA-ES, got {config.popsize}")
    es = _new_es(n_params, config)
    state = _load_state(out / "es_state.json", config)
    for _ in _replay(es, state, out / "es_state.json"):  # the generations already done
        pass
    for g in range(len(state["fitness"]), config.generations):
        start = time.perf_counter()
        candidates = np.array(es.ask())
        fit = np.asarray(fitness(candidates, g), dtype=np.float64)
        es.tell(candidates, (-fit).tolist())  # pycma minimises
        state["fitness"].append(fit.tolist())
        state["fingerprints"].append(_fingerprint(candidates))
        state["history"].append({
            "generation": g + 1, "best": fit.max(), "mean": fit.mean(), "worst": fit.min(),
            "sigma": es.sigma, "seconds": time.perf_counter() - start,
        })  # fmt: skip
        last = g + 1 == config.generations
        if evaluate is not None and ((g + 1) % config.eval_every == 0 or last):
            scores = evaluate(es.mean.copy(), g + 1)
            state["history"][-1]["eval"] = scores
            if state["best"] is None or scores["score"] > state["best"]["score"]:
                state["best"] = {"generation": g + 1, **scores}
                if save_best is not None:
                    save_best(es.mean.copy(), state["best"])
        _save_state(out, state)
        print(f"controller: generation {g + 1}/{config.generations}  best {fit.max():.1f}  "
              f"mean {fit.mean():.1f}  sigma {es.sigma:.4f}", flush=True)  # fmt: skip
    return state


def _new_es(n_params: int, config: ControllerConfig) -> cma.CMAEvolutionStrategy:
    options = {"popsize": config.popsize, "seed": config.seed + 1, "verbose": -9}
    return cma.CMAEvolutionStrategy(np.zeros(n_params), config.sigma0, options)


def _replay(es: cma.CMAEvolutionStrategy, state: dict, path: Path):
    """Tell ``es`` the recorded generations of ``state`` (read from ``path``) again, one by
    one, yielding each generation's number once told. Each generation's candidates must be
    the recorded ones up to rounding (another BLAS thread count or CPU changes the last
    bits), or the settings or pycma changed."""
    for g, fit in enumerate(state["fitness"]):
        candidates = np.array(es.ask())
        known = state["fingerprints"][g]  # None: recorded before fingerprints
        if known is not None and not np.allclose(_fingerprint(candidates), known, 1e-6, 1e-9):
            raise RuntimeError(f"{path}: replay diverged at generation {g}")
        es.tell(candidates, [-f for f in fit])
        yield g + 1


def cma_means(run_dir: str | os.PathLike, count: int) -> list[tuple[int, np.ndarray]]:
    """(generation, CMA-ES mean) at ``count`` generations evenly spaced from the first to
    the last the controller stage ran, replayed from controller/es_state.json."""
    path = Path(run_dir) / "controller" / "es_state.json"
    if not path.exists():
        raise FileNotFoundError(f"no CMA-ES state at {path}; run the controller stage first")
    state = _read_state(path)
    config = ControllerConfig(**{k: state["config"][k] for k in ("popsize", "sigma0", "seed")})
    controller, _ = load_controller(run_dir)
    es, done = _new_es(controller.n_params, config), len(state["fitness"])
    wanted = set(np.linspace(1, done, min(count, done)).round().astype(int).tolist())
    return [(g, es.mean.copy()) for g in _replay(es, state, path) if g in wanted]


def _fingerprint(candidates: np.ndarray) -> list[float]:
    """Each candidate projected on fixed weights: what a replay must find again."""
    return (candidates @ np.linspace(1.0, 2.0, candidates.shape[1])).tolist()


def _load_state(path: Path, config: ControllerConfig) -> dict:
    fresh = {"fitness": [], "fingerprints": [], "history": [], "best": None,
             "config": asdict(config)}  # fmt: skip
    if not path.exists():
        return fresh
    state = _read_state(path)
    for key in SEARCH_KEYS:
        made = state["config"].get(key, getattr(ControllerConfig, key))  # older: the default
        if made != getattr(config, key):
            raise ValueError(
                f"{path} was made with {key}={made!r}, this run has "
                f"{key}={getattr(config, key)!r}; use --force to start the controller over"
            )
    state["config"] = asdict(config)
    return state


def _read_state(path: Path) -> dict:
    """es_state.json; an older one kept exact hashes of the candidates, which a replay on
    another thread count or CPU cannot match: its generations are replayed unchecked."""
    state = json.loads(path.read_text())
    if "fingerprints" not in state:
        state.pop("checksums", None)
        state["fingerprints"] = [None] * len(state["fitness"])
    return state


def _save_state(out: Path, state: dict) -> None:
    write_json(out / "es_state.json", state)
    with atomic_path(out / "history.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in state["history"]))


def play_dreams(dream: Dream, controller: Controller, candidates: np.ndarray, episodes: int,
                generator: torch.Generator, move: Callable | None = None):  # fmt: skip
    """Each candidate in ``episodes`` dreams, all in one batch: (mean return ``[P]``,
    changes of move per 100 steps ``[P]``, None without ``move``, the game's
    ``action -> move``). C acts every ``controller.repeat`` steps and holds its action in
    between (all dreams of the batch start together, so they act on the same steps)."""
    params = torch.as_tensor(candidates, dtype=torch.float32, device=dream.device)
    n = len(params) * episodes
    which = torch.arange(n, device=dream.device) // episodes
    last = torch.full((n,), torch.nan, device=dream.device)  # each dream's last move
    changes = torch.zeros(n, device=dream.device)
    act = controller.dream_policy(params, which)  # C acts every controller.repeat steps

    def policy(obs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        action = act(obs, index)
        if move is not None:
            now, before = move(action[:, 0]), last[index]
            changes[index] += (now != before) & ~before.isnan()
            last[index] = now
        return action

    returns, lengths = dream.rollout(policy, n, generator)
    mean = returns.view(len(params), episodes).mean(1)
    if move is None:
        return mean.cpu().numpy(), None
    rate = 100 * changes.view(len(params), episodes).sum(1)
    rate /= lengths.view(len(params), episodes).sum(1)
    return mean.cpu().numpy(), rate.cpu().numpy()


def dream_fitness(dream: Dream, controller: Controller, episodes: int, seed: int):
    """fitness(candidates, generation): mean return of each over ``episodes`` dreams, all
    dreams in one batch; the dreams of generation g are drawn from (seed, g)."""

    def fitness(candidates: np.ndarray, generation: int) -> np.ndarray:
        return play_dreams(dream, controller, candidates, episodes,
                           dream_generator(dream, seed, generation))[0]  # fmt: skip

    return fitness


def dream_generator(dream: Dream, seed: int, generation: int) -> torch.Generator:
    """The generator of generation ``generation``'s dreams for seed ``seed``."""
    return torch.Generator(dream.device).manual_seed(seed * 1_000_003 + generation)


def real_fitness(run_dir: Path, config: ControllerConfig, controller: Controller):
    """fitness(candidates, generation): mean real-game return of each (rollout executor)."""

    def fitness(candidates: np.ndarray, generation: int) -> np.ndarray:
        seeds = episode_seeds(config.seed, generation, config.episodes)
        jobs = [(c, s) for c in candidates for s in seeds]
        returns, _ = play_episodes(run_dir, jobs, config.workers, controller.spec)
        return returns.reshape(len(candidates), config.episodes).mean(1)

    return fitness


def episode_seeds(seed: int, stream: int, n: int) -> list[int]:
    """n env seeds drawn from (seed, stream): the same list every time."""
    return [int(s) for s in np.random.default_rng([seed, stream]).integers(0, 2**31, n)]


def train_controller(config: ControllerConfig, run_dir: str | os.PathLike) -> dict:
    """Evolve C; write controller/{best.pt, es_state.json, history.jsonl, history.png}.

    best.pt (the CMA-ES mean with the best evaluation so far) is rewritten whenever the
    best improves, so a run stopped early still leaves a usable controller.
    """
    if config.fitness not in FITNESS:
        raise ValueError(f"fitness must be one of {FITNESS}, got {config.fitness!r}")
    run_dir, out = Path(run_dir), Path(run_dir) / "controller"
    game_name = run_game(run_dir)
    game = get_game(game_name)
    dream = Dream.from_run_dir(run_dir, device=config.device, start=config.dream_start,
                               temperature=config.temperature, done=config.done,
                               precision=config.precision)  # fmt: skip
    controller = Controller(dream.obs_size, game.action_dim, game.controller_bias, game.squash,
                            config.max_pedal, config.repeat)  # fmt: skip
    if config.fitness == "dream":
        fitness = dream_fitness(dream, controller, config.episodes, config.seed)
    else:
        fitness = real_fitness(run_dir, config, controller)

    def evaluate(mean: np.ndarray, generation: int) -> dict:
        gen = dream_generator(dream, config.seed + 7, generation)
        returns, changes = play_dreams(dream, controller, mean[None], config.eval_episodes, gen,
                                       game.move)  # fmt: skip
        scores = {"dream": float(returns[0])}
        if changes is not None:
            scores["changes"] = float(changes[0])
        if config.eval_real_episodes:
            seeds = episode_seeds(config.seed + 11, generation, config.eval_real_episodes)
            jobs = [(mean, s) for s in seeds]
            real, _ = play_episodes(run_dir, jobs, config.workers, controller.spec)
            scores["real"] = float(real.mean())
        scores["score"] = scores["real" if config.eval_real_episodes else "dream"]
        return scores

    def save_best(params: np.ndarray, best: dict) -> None:
        save_controller(run_dir, controller, params, game_name, best)

    state = evolve(controller.n_params, fitness, config, out, evaluate, save_best)
    plot_history(state["history"], out / "history.png")
    return state


def save_controller(
    run_dir: str | os.PathLike, controller: Controller, params: np.ndarray, game: str, best: dict
) -> None:
    """Write controller/best.pt: the parameters, the controller's shape, its game and how
    it was chosen (what ``load_controller`` reads)."""
    with atomic_path(Path(run_dir) / "controller" / "best.pt") as tmp:
        torch.save({"params": torch.as_tensor(params), "controller": controller.spec,
                    "game": game, "best": best}, tmp)  # fmt: skip


def load_controller(run_dir: str | os.PathLike, expected: Controller | None = None):
    """(Controller, params) from controller/best.pt, checked against the run's game."""
    path = Path(run_dir) / "controller" / "best.pt"
    if not path.exists():
        raise FileNotFoundError(f"no controller at {path}; run the controller stage first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    game = run_game(run_dir)
    if ckpt.get("game") != game:
        raise ValueError(
            f"{path} is a controller for {ckpt.get('game')!r}, this run plays {game!r}"
        )
    controller = Controller(**ckpt["controller"])
    if expected is not None and controller.spec != expected.spec:
        raise ValueError(f"{path} is a controller for {controller.spec}, this run needs "
                         f"{expected.spec}")  # fmt: skip
    return controller, ckpt["params"].numpy()


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(g, [h["worst"] for h in history], [h["best"] for h in history], alpha=0.2,
                    label="population (worst to best)")  # fmt: skip
    ax.plot(g, [h["mean"] for h in history], label="population mean")
    evals = [(h["generation"], h["eval"]) for h in history if "eval" in h]
    for key, style in (("dream", "o-"), ("real", "s-")):
        points = [(x, e[key]) for x, e in evals if key in e]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"CMA-ES mean, {key}")
    ax.set_xlabel("generation")
    ax.set_ylabel("return")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def summary(run_dir: Path) -> list[str]:
    """The kept controller (generation, dream score) and the CMA-ES curve, as Markdown."""
    path = run_dir / "controller" / "es_state.json"
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    best, generations = state.get("best") or {}, len(state["fitness"])
    line = f"{generations} generations; kept the CMA-ES mean of generation " + (
        f"{best['generation']}, dream score {best['dream']:.1f}" if best else "none yet"
    )
    if "changes" in best:
        line += f", {best['changes']:.1f} changes of move per 100 dream steps"
    return ["## C", "", line, "", "![CMA-ES](controller/history.png)"]
