"""Running the stages of an experiment in order, skipping what is done.

``<run_dir>/stages.json`` records, per stage, the settings its outputs were made with
(its own and those of every stage it reads, ``worldmodels.stages``) and whether it
finished. A finished stage with the same settings is skipped; a stage whose settings
changed since its outputs were made is refused unless forced (never two configs'
artifacts mixed); an unfinished one resumes from its own checkpoints. Records written by
older code are read as today's code would have written them: a setting added since
counts at its default (a new setting's default does what was done before it), a setting
removed or moved to another stage no longer counts. ``--force`` sets a stage's outputs
aside, runs it again, and deletes the old outputs only once it has finished; if it
fails, the old outputs are put back.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from worldmodels import executor
from worldmodels.artifacts import run_game
from worldmodels.config import Config, stage_dict, to_dict
from worldmodels.files import atomic_path, write_json
from worldmodels.pretrained import UNPACKED
from worldmodels.stages import NAMES, STAGES, Stage, get
from worldmodels.stages.evaluate import headline

REPLACED = ".replaced"  # suffix of a forced stage's old outputs while it runs


def claim_run_dir(config: Config) -> None:
    """Refuse a run directory of another game or experiment; write the resolved
    config.yaml."""
    game, collected = config.collect.game, (config.path / "rollouts" / "meta.json").exists()
    if collected and (held := run_game(config.path)) != game:
        raise ValueError(f"{config.path} holds episodes of {held!r}, this experiment plays "
                         f"{game!r} (collect.game); use another run_dir")  # fmt: skip
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


def _strip(settings: dict) -> dict:
    """Drop each stage's settings that do not change its outputs."""
    return {name: {k: v for k, v in values.items() if k not in get(name).ignored}
            for name, values in settings.items()}  # fmt: skip


def settings_of(config: Config, stage: str) -> dict:
    """The settings a stage's outputs are made with (what stages.json records)."""
    return _strip(stage_dict(config, stage))


def _as_today(recorded: dict, stage: str) -> dict:
    """``recorded`` as today's code would record it: settings added since, at their
    defaults; settings no longer there (removed, or moved to another stage), dropped."""

    def align(old: dict, today: dict) -> dict:
        new = {}
        for key, value in today.items():
            if key not in old:
                new[key] = value
            elif isinstance(value, dict) and isinstance(old[key], dict) and key in NAMES:
                new[key] = align(old[key], value)
            else:
                new[key] = old[key]
        return new

    defaults = settings_of(Config(), stage)
    return align(_strip({k: v for k, v in recorded.items() if k in NAMES}), defaults)


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key} ({a!r} -> {b!r})")
    return keys


def _grown(recorded: dict, settings: dict) -> set[str]:
    """The stages whose growable settings (``Stage.grows``) were raised from ``recorded``
    to ``settings``; empty if anything else changed. A stage whose growable setting was 0
    made nothing (``iterate.rounds: 0``), so its other settings may change too."""
    grown = set()
    for name in set(recorded) | set(settings):
        old, new = recorded.get(name), settings.get(name)
        if old == new:
            continue
        if not (isinstance(old, dict) and isinstance(new, dict) and set(old) == set(new)):
            return set()
        if any(old[key] == 0 < new[key] for key in get(name).grows):
            grown.add(name)
            continue
        for key in (k for k in old if old[k] != new[k]):
            raised = isinstance(old[key], int) and isinstance(new[key], int) and new[key] > old[key]
            if key not in get(name).grows or not raised:
                return set()
            grown.add(name)
    return grown


def run_stage(config: Config, name: str, force: bool = False) -> str:
    """Run one stage unless it is done; return "skipped", "adopted", "ran" or "resumed"."""
    stage = get(name)
    run_dir, out = config.path, config.path / stage.output
    status, settings = read_status(run_dir), settings_of(config, name)
    entry = None if force else status.get(name)
    if entry is not None and (recorded := _as_today(entry["settings"], name)) != settings:
        changed, grown = ", ".join(_changed(recorded, settings)), _grown(recorded, settings)
        if not grown:
            raise ValueError(
                f"stage {name}: its outputs in {out} were made with other settings "
                f"({changed}); rerun with --force to remake them"
            )
        if grown - {name}:  # what it read has grown: its outputs are out of date
            print(f"{name}: {changed}: made again", flush=True)
            return _forced(config, stage, status.get(name))
        print(f"{name}: {changed}: going on from where it stopped", flush=True)
        entry = dict(entry, done=False)
    if entry is not None and entry["done"]:
        print(f"{name}: done already, skipped")
        return "skipped"
    adoptable = entry is None and not force and stage.adopt is not None
    if adoptable and stage.adopt(getattr(config, name), run_dir, status):
        _record(run_dir, name, settings, done=True)
        print(f"{name}: found in the run directory's earlier layout, adopted")
        return "adopted"
    if entry is None and not force and out.exists() and any(out.iterdir()):
        raise ValueError(f"stage {name}: {out} holds outputs this experiment did not make; "
                         "move them away or rerun with --force")  # fmt: skip
    if force:
        return _forced(config, stage, status.get(name))
    _record(run_dir, name, settings, done=False)
    stage.run(getattr(config, name), run_dir)
    _record(run_dir, name, settings, done=True)
    return "resumed" if entry is not None else "ran"


def _forced(config: Config, stage: Stage, old_entry: dict | None) -> str:
    """Run ``stage`` afresh; its old outputs wait beside it and come back if it fails."""
    run_dir, settings = config.path, settings_of(config, stage.name)
    out = run_dir / stage.output
    aside = out.with_name(out.name + REPLACED)
    if out.exists() and not aside.exists():
        out.rename(aside)
    shutil.rmtree(out, ignore_errors=True)  # a half-made new output of a killed forced run
    try:
        _record(run_dir, stage.name, settings, done=False)
        stage.run(getattr(config, stage.name), run_dir)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if aside.exists():
            aside.rename(out)
        _restore(run_dir, stage.name, old_entry)
        raise
    _record(run_dir, stage.name, settings, done=True)
    shutil.rmtree(aside, ignore_errors=True)
    return "ran"


def _record(run_dir: Path, name: str, settings: dict, done: bool) -> None:
    status = read_status(run_dir)
    entry = status.get(name, {})
    if not done or "started" not in entry or entry.get("settings") != settings:
        entry = {"settings": settings, "started": time.time()}
    entry["done"] = done
    if done:
        entry["finished"] = time.time()
    status[name] = entry
    write_json(run_dir / "stages.json", status)


def _restore(run_dir: Path, name: str, entry: dict | None) -> None:
    status = read_status(run_dir)
    if entry is None:
        status.pop(name, None)
    else:
        status[name] = entry
    write_json(run_dir / "stages.json", status)


def run(config: Config, stages: tuple[str, ...] = NAMES, force: bool = False) -> None:
    """Run ``stages`` in order (each skipped if done); ``force`` remakes them all."""
    with executor.use(config.runtime):  # where real-game episodes are played; first, so
        config.path.mkdir(parents=True, exist_ok=True)  # a bad Ray address writes nothing
        claim_run_dir(config)
        logger = _wandb(config)
        for name in stages:
            print(f"== {name} ==", flush=True)
            run_stage(config, name, force)
            if logger is not None:
                logger.log_stage(get(name))
    if logger is not None:
        logger.finish()


def _wandb(config: Config):
    if not config.logging.wandb:
        return None
    from worldmodels.wandb_log import WandbLogger  # imports wandb: only when asked for

    return WandbLogger(config)


def report(run_dir: str | Path) -> str:
    """Stage status and times, then every stage's summary, as Markdown; also written to
    <run_dir>/report.md."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    name = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("name")
    status = read_status(run_dir)
    lines = [f"# {name}", ""]
    if (unpacked := run_dir / UNPACKED).exists():
        source = json.loads(unpacked.read_text())["from"]
        lines += [f"A pretrained agent ({source}): its V, M and C were trained elsewhere; "
                  "here it is only evaluated.", ""]  # fmt: skip
    if status.get("evaluate", {}).get("done") and (verdict := headline(run_dir)):
        lines += [f"**Verdict: {verdict}.**", ""]
    lines += _status_table(status)
    for stage in STAGES:
        summary = stage.summary(run_dir) if status.get(stage.name, {}).get("done") else []
        lines += ["", *summary] if summary else []
    text = "\n".join(lines) + "\n"
    with atomic_path(run_dir / "report.md") as tmp:
        tmp.write_text(text)
    return text


def _status_table(status: dict) -> list[str]:
    lines, total = ["| stage | status | minutes |", "|---|---|---|"], 0.0
    for name in NAMES:
        entry = status.get(name)
        if entry is None:
            lines.append(f"| {name} | not run | |")
            continue
        state = "done" if entry["done"] else "started, not finished"
        minutes = ""
        if entry["done"] and "started" in entry and "finished" in entry:
            seconds = entry["finished"] - entry["started"]
            total += seconds
            minutes = f"{seconds / 60:.1f}"
        lines.append(f"| {name} | {state} | {minutes} |")
    lines.append(f"| all | | {total / 60:.1f} |")
    return lines
