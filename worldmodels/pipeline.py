"""Running the stages of an experiment in order, skipping what is done.

``<run_dir>/stages.json`` records, per stage, the settings its outputs were made with
(its own and every earlier stage's) and whether it finished. A finished stage with the
same settings is skipped; a stage whose settings changed since its outputs were made is
refused unless forced (never two configs' artifacts mixed); an unfinished one resumes
from its own checkpoints. A setting added to the code since a stage's record was
written counts as unchanged at its default (a new setting's default does what was done
before it existed). ``--force`` deletes a stage's outputs and runs it again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from worldmodels.collect import collect
from worldmodels.config import STAGES, Config, stage_dict, to_dict
from worldmodels.controller_stage import train_controller
from worldmodels.evaluate import evaluate
from worldmodels.files import atomic_path, write_json
from worldmodels.mdnrnn_stage import train_mdnrnn
from worldmodels.vae_stage import encode, train_vae

OUTPUTS = {"collect": "rollouts", "vae": "vae", "encode": "latents", "mdnrnn": "mdnrnn",
           "controller": "controller", "evaluate": "evaluate"}  # fmt: skip
RUNNERS = {
    "collect": lambda c: collect(c.collect, c.path / "rollouts"),
    "vae": lambda c: train_vae(c.vae, c.path),
    "encode": lambda c: encode(c.encode, c.path),
    "mdnrnn": lambda c: train_mdnrnn(c.mdnrnn, c.path),
    "controller": lambda c: train_controller(c.controller, c.path),
    "evaluate": lambda c: evaluate(c.evaluate, c.path),
}
IGNORED = {"workers", "device"}  # settings that do not change a stage's outputs


def claim_run_dir(config: Config) -> None:
    """Refuse a run directory of another experiment; write the resolved config.yaml."""
    path = config.path / "config.yaml"
    if path.exists():
        found = yaml.safe_load(path.read_text()) or {}
        if found.get("name") != config.name:
            raise ValueError(
                f"{config.path} holds the experiment {found.get('name')!r}, not {config.name!r}; "
                "use another run_dir"
            )
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def read_status(run_dir: Path) -> dict:
    path = run_dir / "stages.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _settings(config: Config, stage: str) -> dict:
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in IGNORED}

    return strip(stage_dict(config, stage))


def _with_added(recorded: dict, stage: str) -> dict:
    """``recorded`` with the settings added to the code since it was written, at their
    defaults: a setting is added with a default that does what was done before it."""

    def fill(old, default):
        new = dict(old)
        for key, value in default.items():
            if key not in new:
                new[key] = value
            elif isinstance(value, dict) and isinstance(new[key], dict):
                new[key] = fill(new[key], value)
        return new

    return fill(recorded, _settings(Config(), stage))


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return keys


def run_stage(config: Config, stage: str, force: bool = False) -> str:
    """Run one stage unless it is done; return "skipped", "ran" or "resumed"."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    run_dir, out = config.path, config.path / OUTPUTS[stage]
    status, settings = read_status(run_dir), _settings(config, stage)
    entry = status.get(stage)
    if force:
        shutil.rmtree(out, ignore_errors=True)
        entry = None
    elif entry is not None and (recorded := _with_added(entry["settings"], stage)) != settings:
        changed = ", ".join(_changed(recorded, settings))
        raise ValueError(
            f"stage {stage}: its outputs in {out} were made with other settings ({changed}); "
            f"rerun with --force to remake them"
        )
    elif entry is not None and entry["done"]:
        print(f"{stage}: done already, skipped")
        return "skipped"
    elif entry is None and out.exists() and any(out.iterdir()):
        raise ValueError(f"stage {stage}: {out} holds outputs this experiment did not make; "
                         "move them away or rerun with --force")  # fmt: skip
    resumed = entry is not None
    status[stage] = {"settings": settings, "done": False, "started": time.time()}
    write_json(run_dir / "stages.json", status)
    RUNNERS[stage](config)
    status[stage].update(done=True, finished=time.time())
    write_json(run_dir / "stages.json", status)
    return "resumed" if resumed else "ran"


def run(config: Config, stages: tuple[str, ...] = STAGES, force: bool = False) -> None:
    """Run ``stages`` in order (each skipped if done); ``force`` remakes them all."""
    config.path.mkdir(parents=True, exist_ok=True)
    claim_run_dir(config)
    logger = _wandb(config)
    for stage in stages:
        print(f"== {stage} ==", flush=True)
        run_stage(config, stage, force)
        if logger is not None:
            logger.log_stage(stage)
    if logger is not None:
        logger.finish()


def _wandb(config: Config):
    if not config.logging.wandb:
        return None
    from worldmodels.wandb_log import WandbLogger  # imports wandb: only when asked for

    return WandbLogger(config)


def report(run_dir: str | Path) -> str:
    """Stage status and scores as Markdown; also written to <run_dir>/report.md."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    status = read_status(run_dir)
    name = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("name")
    lines = [f"# {name}", "", "| stage | status |", "|---|---|"]
    for stage in STAGES:
        entry = status.get(stage)
        state = (
            "not run" if entry is None else ("done" if entry["done"] else "started, not finished")
        )
        lines.append(f"| {stage} | {state} |")
    lines += _scores(run_dir)
    for title, image in (("V: frames and reconstructions", "vae/reconstructions.png"),
                         ("CMA-ES", "controller/history.png")):  # fmt: skip
        if (run_dir / image).exists():
            lines += ["", f"## {title}", "", f"![{title}]({image})"]
    text = "\n".join(lines) + "\n"
    with atomic_path(run_dir / "report.md") as tmp:
        tmp.write_text(text)
    return text


def _scores(run_dir: Path) -> list[str]:
    lines = []
    m = run_dir / "mdnrnn" / "results.json"
    if m.exists():
        r = json.loads(m.read_text())
        lines += ["", "## M", "", f"held-out NLL per dim {r['z_nll_per_dim']:.3f} nats "
                  f"(z_(t+1) = z_t baseline {r['baseline_z_nll_per_dim']:.3f}); done precision "
                  f"{r.get('done_precision', float('nan')):.2f}, recall "
                  f"{r.get('done_recall', float('nan')):.2f}"]  # fmt: skip
    e = run_dir / "evaluate" / "results.json"
    if e.exists():
        r = json.loads(e.read_text())
        lines += ["", "## Scores", "", "| | mean | std |", "|---|---|---|",
                  f"| real game ({len(r['seeds'])} episodes) | {r['real']['mean']:.1f} | "
                  f"{r['real']['std']:.1f} |",
                  f"| random policy, same seeds | {r['random_policy']['mean']:.1f} | "
                  f"{r['random_policy']['std']:.1f} |",
                  f"| dream (tau {r['dream']['temperature']}) | {r['dream']['mean']:.1f} "
                  "| |"]  # fmt: skip
    return lines
