"""One typed config for a whole experiment: a dataclass per stage, nested in ``Config``.

An experiment YAML overrides the defaults only (unknown keys and wrong types are refused
with the key's name); ``key.sub=value`` arguments override the YAML. The resolved config
is written to ``<run_dir>/config.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from worldmodels.collect import CollectConfig
from worldmodels.controller_stage import ControllerConfig
from worldmodels.evaluate import EvaluateConfig
from worldmodels.mdnrnn_stage import MDNRNNConfig
from worldmodels.vae_stage import EncodeConfig, VAEConfig

STAGES = ("collect", "vae", "encode", "mdnrnn", "controller", "evaluate")


@dataclass
class LoggingConfig:
    wandb: bool = False
    """Also log to Weights & Biases (imported only then; WANDB_MODE is respected)."""
    project: str = "worldmodels"


@dataclass
class Config:
    """An experiment: its name, run directory and every stage's settings."""

    name: str = "doom_takecover"
    run_dir: str = ""
    """Where the stages write; empty means runs/<name>."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    mdnrnn: MDNRNNConfig = field(default_factory=MDNRNNConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")


def load_config(yaml_path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML (if any), then ``key.sub=value`` overrides."""
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


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def stage_dict(config: Config, stage: str) -> dict:
    """The settings that shape a stage's outputs: its own and those of every stage before."""
    data = to_dict(config)
    upto = STAGES[: STAGES.index(stage) + 1]
    return {s: data[s] for s in upto}
