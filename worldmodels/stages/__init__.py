"""The stages of an experiment, each declared once, in the order they run.

A stage is a module of this package (its settings dataclass, its runner and its report
summary) and one ``Stage`` entry in ``STAGES`` below. Everything else (the experiment
config, the command line, the pipeline's skip / refuse / resume rules, report.md, wandb)
is built from this list. docs/design.md shows how to add one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worldmodels.stages import (
    calibrate,
    collect,
    controller,
    encode,
    evaluate,
    iterate,
    mdnrnn,
    vae,
)


@dataclass(frozen=True)
class Stage:
    """What the pipeline needs to know about a stage.

    Attributes:
        name: The stage's name on the command line and its key in the experiment YAML.
        settings: Its settings dataclass.
        run: ``run(settings, run_dir)`` makes (or resumes making) its outputs.
        output: The folder of the run directory it writes.
        reads: The stages whose outputs it reads: their settings (and those of the stages
            they read) shape its outputs, so a change to them makes it stale.
        ignored: Its settings that do not change its outputs (workers, device, how often it
            saves): changing them never makes it stale.
        media: Pictures and videos it writes, for wandb.
        summary: ``summary(run_dir)``: its lines of report.md (Markdown; [] if none).
        about: One line for ``--help``.
        adopt: ``adopt(settings, run_dir, status)``: recognise outputs of an earlier layout
            of the run directory, made with these settings, and put them in place (True),
            so that they are not made again.
        grows: Its settings that may be raised once its outputs are made (more rounds,
            more generations): it then goes on where it stopped, and the stages that read
            it are made again.
    """

    name: str
    settings: type
    run: Callable[[object, Path], object]
    output: str
    reads: tuple[str, ...]
    summary: Callable[[Path], list[str]]
    about: str
    ignored: frozenset[str] = frozenset({"workers", "device"})
    media: tuple[str, ...] = ()
    adopt: Callable[[object, Path, dict], bool] | None = None
    grows: frozenset[str] = frozenset()


STAGES: tuple[Stage, ...] = (
    Stage("collect", collect.CollectConfig, lambda c, d: collect.collect(c, d / "rollouts"),
          "rollouts", (), collect.summary,
          "random-policy episodes of the real game -> rollouts/"),
    Stage("vae", vae.VAEConfig, vae.train_vae, "vae", ("collect",), vae.summary,
          "train V on the frames -> vae/", ignored=frozenset({"device", "checkpoint_every"}),
          media=("vae/reconstructions.png",)),
    Stage("encode", encode.EncodeConfig, encode.encode, "latents", ("vae",), encode.summary,
          "every episode through V -> latents/"),
    Stage("mdnrnn", mdnrnn.MDNRNNConfig, mdnrnn.train_mdnrnn, "mdnrnn", ("encode",),
          mdnrnn.summary, "train M on the latent sequences -> mdnrnn/",
          ignored=frozenset({"device", "checkpoint_every"})),
    Stage("calibrate", calibrate.CalibrateConfig, calibrate.run_calibration, "calibration",
          ("mdnrnn",), calibrate.summary,
          "blind policies in the dream and the real game -> calibration/",
          adopt=calibrate.adopt_earlier_layout),
    Stage("controller", controller.ControllerConfig, controller.train_controller,
          "controller", ("mdnrnn",), controller.summary,
          "evolve C with CMA-ES in the dream (or the real game) -> controller/",
          media=("controller/history.png",), grows=frozenset({"generations"})),
    Stage("iterate", iterate.IterateConfig, iterate.iterate, "rounds", ("controller",),
          iterate.summary, "rounds of C's episodes, M and C trained again (off: rounds 0) "
          "-> rounds/", grows=frozenset({"rounds"})),
    Stage("evaluate", evaluate.EvaluateConfig, evaluate.evaluate, "evaluate", ("iterate",),
          evaluate.summary, "C in the real game, the random policy, the dream -> evaluate/",
          media=("evaluate/episode.mp4",)),
)  # fmt: skip

NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)


def get(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(NAMES)}")


def upstream(name: str) -> list[str]:
    """``name`` and every stage it reads, directly or not, in run order."""
    needed, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in needed:
            needed.add(current)
            todo += get(current).reads
    return [n for n in NAMES if n in needed]
