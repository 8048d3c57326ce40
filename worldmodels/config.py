"""One typed config for a whole experiment: each stage's settings dataclass, nested in
``Config`` (built from the stage registry, ``worldmodels.stages``).

An experiment YAML overrides the defaults only (unknown keys and wrong types are refused
with the key's name); ``key.sub=value`` arguments override the YAML; then every value is
checked against its allowed range (each settings class's ``limits``) before any stage
runs. The resolved config is written to ``<run_dir>/config.yaml``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import operator
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from worldmodels.envs import get_game
from worldmodels.executor import RuntimeConfig
from worldmodels.stages import NAMES, STAGES, upstream

STAGE_NAMES = NAMES


@dataclass
class LoggingConfig:
    """Where metrics go besides metrics.jsonl."""

    wandb: bool = False
    """Also log to Weights & Biases (imported only then; WANDB_* variables are respected)."""
    project: str = "worldmodels"
    """The wandb project."""


def _path(self) -> Path:
    return Path(self.run_dir or f"runs/{self.name}")


Config = dataclasses.make_dataclass(
    "Config",
    [("name", str, field(default="doom_takecover")), ("run_dir", str, field(default="")),
     *[(s.name, s.settings, field(default_factory=s.settings)) for s in STAGES],
     ("runtime", RuntimeConfig, field(default_factory=RuntimeConfig)),
     ("logging", LoggingConfig, field(default_factory=LoggingConfig))],
    namespace={"path": property(_path, doc="The run directory: run_dir, or runs/<name>."),
               "__doc__": "An experiment: its name, run directory and every stage's settings."},
)  # fmt: skip
"""An experiment: ``name``, ``run_dir`` (empty: runs/<name>), one field per stage (its
settings dataclass), ``runtime`` (where real-game episodes are played), ``logging``;
``config.path`` is the run directory."""


def load_config(yaml_path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML (if any), then ``key.sub=value`` overrides; then checked."""
    config = Config()
    if yaml_path is not None:
        try:
            data = yaml.safe_load(Path(yaml_path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read experiment {yaml_path}: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(
                f"{yaml_path} must hold a mapping of settings, got {type(data).__name__}"
            )
        _apply(config, data, where=str(yaml_path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        value = yaml.safe_load(text) if text else ""
        nested = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _apply(config, nested, where="command line")
    check_limits(config)
    return config


def _apply(target, data: dict, where: str, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in names:
            raise ValueError(
                f"{where}: unknown setting {name!r}; known: {', '.join(sorted(names))}"
            )
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {name!r} must be a mapping of settings, got {value!r}")
            _apply(current, value, where, prefix=f"{name}.")
        else:
            setattr(target, key, _checked(value, hints[key], name, where))


def _checked(value, hint, name: str, where: str):
    """``value`` if it fits the type ``hint`` (ints are accepted for floats), else raise."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (bool, str) and isinstance(value, option):
            return value
        if (option is dict or typing.get_origin(option) is dict) and isinstance(value, dict):
            return value
    shown = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{where}: {name!r} must be {shown}, got {value!r}")


def check_limits(config: Config) -> None:
    """Refuse a value out of its allowed range (its settings class's ``limits``), or
    settings that contradict each other, naming the key; before anything is written."""
    sections = [(s.name, s.settings) for s in STAGES] + [("runtime", RuntimeConfig)]
    for section, settings in sections:
        for name, rule in settings.limits.items():
            value, key = getattr(getattr(config, section), name), f"{section}.{name}"
            if value is not None and not _allowed(value, rule):
                words = rule[0].isalpha()
                shown = f"one of {rule.split()}" if words else rule.replace(", ", " and ")
                raise ValueError(f"setting {key!r} must be {shown}, got {value!r}")
    if config.mdnrnn.min_lr > config.mdnrnn.lr:
        raise ValueError(f"setting 'mdnrnn.min_lr' ({config.mdnrnn.min_lr}) must not exceed "
                         f"'mdnrnn.lr' ({config.mdnrnn.lr})")  # fmt: skip
    # the check Controller makes, before anything runs
    if config.controller.max_pedal != 1.0 and get_game(config.collect.game).squash != "carracing":
        raise ValueError(
            f"setting 'controller.max_pedal' is for CarRacing's pedals; "
            f"{config.collect.game!r} has none, got {config.controller.max_pedal}"
        )
    if config.vae.buffer_frames < config.vae.batch_size:
        raise ValueError(f"setting 'vae.buffer_frames' ({config.vae.buffer_frames}) must be at "
                         f"least 'vae.batch_size' ({config.vae.batch_size})")  # fmt: skip


_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _allowed(value, rule: str) -> bool:
    """``rule``: allowed words ("dream real") or bounds ("> 0", ">= 0, < 1")."""
    if rule[0].isalpha():
        return value in rule.split()
    bounds = (bound.split() for bound in rule.split(", "))
    return all(_COMPARE[op](value, float(bound)) for op, bound in bounds)


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def stage_dict(config: Config, stage: str) -> dict:
    """The settings that shape a stage's outputs: its own and those of every stage it
    reads, directly or not."""
    data = to_dict(config)
    return {s: data[s] for s in upstream(stage)}


def settings_help() -> str:
    """Every setting with its default, allowed values and one-line doc, per section."""
    lines = []
    sections = [(s.name, s.settings) for s in STAGES]
    for section, cls in sections + [("runtime", RuntimeConfig), ("logging", LoggingConfig)]:
        lines.append(f"{section}:  {inspect.getdoc(cls).splitlines()[0]}")
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            rule = getattr(cls, "limits", {}).get(f.name, "")
            shown = f"  [{rule}]" if rule else ""
            lines.append(f"  {section}.{f.name} = {default!r}{shown}")
            if docs.get(f.name):
                lines += [f"      {line}" for line in textwrap.wrap(docs[f.name], 80)]
    return "\n".join(lines)


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (the string after each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body, docs = tree.body[0].body, {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
