"""Shipped agents: a trained V, M and C in safetensors, played without any training.

A pretrained folder (``pretrained/<name>/``) holds

    agent.json                 the game and its settings, V's and M's constructor
                               arguments, C's shape, and every file's bytes and sha256
    experiment.yaml            the resolved experiment that trained it
    vae.safetensors            V's weights
    mdnrnn.safetensors         M's weights
    controller.safetensors     C's parameters (the flat vector CMA-ES evolved)
    dream_starts.safetensors   mu and log-variance of the first frame of every training
                               episode: where dreams start

``export(run_dir, folder)`` writes one from a finished run directory.
``unpack(folder, run_dir)`` checks every file against agent.json (present, same size,
same sha256, the shapes the architecture needs) and lays the agent out as a run
directory (rollouts/meta.json, vae/, mdnrnn/, latents/, controller/), so that the
evaluate stage scores a shipped agent with the same code as a freshly trained one.
Nothing is unpickled: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from worldmodels.artifacts import (
    agent_dir,
    load_latents,
    load_mdnrnn,
    load_vae,
    run_env,
    run_game,
)
from worldmodels.controller import Controller
from worldmodels.files import atomic_path, write_json
from worldmodels.mdnrnn import MDNRNN
from worldmodels.rollouts import episode_path
from worldmodels.stages.controller import load_controller, save_controller
from worldmodels.stages.encode import write_latents
from worldmodels.train import save_checkpoint
from worldmodels.vae import ConvVAE

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained"
"""Where the agents shipped with the project live."""

MANIFEST = "agent.json"
FILES = ("vae.safetensors", "mdnrnn.safetensors", "controller.safetensors",
         "dream_starts.safetensors")  # fmt: skip
UNPACKED = "pretrained.json"  # marks a run directory made by ``unpack``


def known() -> list[str]:
    """Names of the shipped agents."""
    return sorted(p.parent.name for p in SHIPPED.glob(f"*/{MANIFEST}"))


def find(name: str) -> Path:
    """The folder of a shipped agent (by name) or of any pretrained folder (by path)."""
    folder = Path(name) if (Path(name) / MANIFEST).exists() else SHIPPED / name
    if not (folder / MANIFEST).exists():
        raise ValueError(
            f"unknown pretrained agent {name!r}; known: {', '.join(known()) or 'none'} "
            "(or give the path of a folder holding agent.json)"
        )
    return folder


def export(run_dir: str | os.PathLike, folder: str | os.PathLike) -> dict:
    """Write the pretrained folder of a finished run directory (its final agent: the last
    round of iterative training, if any); return its manifest."""
    run_dir, folder, agent = Path(run_dir), Path(folder), agent_dir(run_dir)
    vae, mdnrnn = load_vae(agent), load_mdnrnn(agent)
    controller, params = load_controller(agent)
    episodes, _ = load_latents(agent, ("mu", "logvar"), steps=1)
    tensors = {
        "vae.safetensors": vae.state_dict(),
        "mdnrnn.safetensors": mdnrnn.state_dict(),
        "controller.safetensors": {"params": torch.from_numpy(params)},
        "dream_starts.safetensors": {
            key: torch.from_numpy(np.concatenate([e[key] for e in episodes]))
            for key in ("mu", "logvar")
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    for file, state in tensors.items():
        with atomic_path(folder / file) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    experiment = yaml.safe_load((run_dir / "config.yaml").read_text())
    experiment["run_dir"] = ""
    with atomic_path(folder / "experiment.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(experiment, sort_keys=False))
    manifest = {
        "game": run_game(run_dir),
        "env": run_env(run_dir),
        "vae": vae.model_args,
        "mdnrnn": mdnrnn.model_args,
        "controller": controller.spec,
        "files": {file: _fingerprint(folder / file) for file in FILES},
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def unpack(folder: str | os.PathLike, run_dir: str | os.PathLike) -> dict:
    """Check a pretrained folder and lay it out as a run directory; return its manifest.

    Raises ValueError naming the file when one is missing, altered (size or sha256 not
    what agent.json records) or holds weights of another shape than the architecture
    agent.json describes. ``run_dir`` must be new or made by an earlier ``unpack``.
    """
    folder, run_dir = Path(folder), Path(run_dir)
    manifest = _manifest(folder / MANIFEST)
    for file in FILES:
        _verify(folder / file, manifest["files"].get(file))
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / UNPACKED).exists():
        raise ValueError(f"{run_dir} holds a run that was not unpacked from a pretrained agent; "
                         "give another run_dir")  # fmt: skip
    vae = _model(folder / "vae.safetensors", ConvVAE(**manifest["vae"]))
    mdnrnn = _model(folder / "mdnrnn.safetensors", MDNRNN(**manifest["mdnrnn"]))
    spec = manifest["controller"]
    params = _tensors(folder / "controller.safetensors", {"params": (Controller(**spec).n_params,)})
    starts = _tensors(folder / "dream_starts.safetensors",
                      {"mu": (None, vae.z_size), "logvar": (None, vae.z_size)})  # fmt: skip
    if starts["mu"].shape != starts["logvar"].shape:
        raise ValueError(f"{folder / 'dream_starts.safetensors'}: mu {list(starts['mu'].shape)} "
                         f"and logvar {list(starts['logvar'].shape)} differ")  # fmt: skip

    source = {"pretrained": str(folder)}
    for stage, model in (("vae", vae), ("mdnrnn", mdnrnn)):
        save_checkpoint(run_dir / stage / "ckpt.pt", model, None, None, source, {})
    save_controller(run_dir, Controller(**spec), params["params"], manifest["game"], source)
    write_json(run_dir / "rollouts" / "meta.json",
               {"game": manifest["game"], "env": manifest["env"]})  # fmt: skip
    latents = run_dir / "latents"
    shutil.rmtree(latents, ignore_errors=True)  # an earlier unpack's starts
    latents.mkdir(parents=True)
    for i, (mu, logvar) in enumerate(zip(starts["mu"], starts["logvar"], strict=True)):
        write_latents(
            episode_path(latents, i), {"mu": mu[None].numpy(), "logvar": logvar[None].numpy()}
        )
    write_json(latents / "meta.json", {"z_size": vae.z_size})
    write_json(run_dir / UNPACKED, {"from": str(folder), **manifest})
    return manifest


def _manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    needed = ("game", "env", "vae", "mdnrnn", "controller", "files")
    missing = [key for key in needed if key not in manifest]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return manifest


def _fingerprint(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, recorded: dict | None) -> None:
    if recorded is None:
        raise ValueError(f"{path.parent / MANIFEST} records no {path.name}")
    if not path.exists():
        raise ValueError(f"{path} is missing")
    size = path.stat().st_size
    if size != recorded["bytes"]:
        raise ValueError(f"{path} has {size} bytes, {MANIFEST} records {recorded['bytes']}: "
                         "the file was altered or is incomplete")  # fmt: skip
    if _sha256(path) != recorded["sha256"]:
        raise ValueError(f"{path}'s sha256 is not the one {MANIFEST} records: the file was altered")


def _tensors(path: Path, shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against ``shapes`` (None: any size)."""
    tensors = load_file(str(path))
    if set(tensors) != set(shapes):
        raise ValueError(f"{path} holds tensors {sorted(tensors)}, the architecture in "
                         f"{MANIFEST} needs {sorted(shapes)}")  # fmt: skip
    for key, shape in shapes.items():
        found = tuple(tensors[key].shape)
        same = [s in (None, f) for s, f in zip(shape, found, strict=False)]
        if len(found) != len(shape) or not all(same):
            raise ValueError(f"{path}: {key} has shape {list(found)}, the architecture in "
                             f"{MANIFEST} needs {[s or 'any' for s in shape]}")  # fmt: skip
    return tensors


def _model(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    model.load_state_dict(_tensors(path, shapes))
    return model
