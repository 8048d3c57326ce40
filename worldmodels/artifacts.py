"""Reading what earlier stages wrote into a run directory (docs/design.md: data flow).

Every loader checks what it reads and says which file to produce when it is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from worldmodels.envs import recorded_settings
from worldmodels.mdnrnn import MDNRNN
from worldmodels.train import load_checkpoint
from worldmodels.vae import ConvVAE

LATENT_KEYS = ("mu", "logvar", "action", "reward", "terminated")
ROUNDS = "rounds"  # the iterate stage's folder: rounds/<r>/ per round of iterative training


def run_game(run_dir: str | os.PathLike) -> str:
    """The registry name of the game a run directory's episodes were collected from."""
    return _rollouts_meta(run_dir)["game"]


def run_env(run_dir: str | os.PathLike) -> dict:
    """The game settings (``collect.env``, e.g. Doom's skill) the episodes were played with.

    Every later real-game episode of the run (calibration, controller, evaluation) is
    played with the same, so that V sees the frames it was trained on.
    """
    meta = _rollouts_meta(run_dir)
    return recorded_settings(meta["game"], meta.get("env", {}))


def _rollouts_meta(run_dir) -> dict:
    meta = Path(run_dir) / "rollouts" / "meta.json"
    if not meta.exists():
        raise FileNotFoundError(f"no {meta}; run the collect stage first")
    return json.loads(meta.read_text())


def read_results(run_dir: str | os.PathLike, output: str) -> dict:
    """``<run_dir>/<output>/results.json``, the numbers a stage reports; {} before it has
    written them."""
    path = Path(run_dir) / output / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def agent_dir(run_dir: str | os.PathLike) -> Path:
    """Where a run's final agent (V, M and C) is: its last finished round of iterative
    training (``rounds/<r>/``, itself laid out as a run directory), else the run directory."""
    final = read_results(run_dir, ROUNDS).get("final")
    return Path(run_dir) / final if final else Path(run_dir)


def load_vae(run_dir: str | os.PathLike, device: torch.device | None = None) -> ConvVAE:
    """The trained V of a run directory, in eval mode."""
    return _load_model(run_dir, "vae", ConvVAE, device)


def load_mdnrnn(run_dir: str | os.PathLike, device: torch.device | None = None) -> MDNRNN:
    """The trained M of a run directory, in eval mode."""
    return _load_model(run_dir, "mdnrnn", MDNRNN, device)


def _load_model(run_dir, stage: str, cls, device):
    path = Path(run_dir) / stage / "ckpt.pt"
    if not path.exists():
        raise FileNotFoundError(f"no trained {cls.__name__} at {path}; run the {stage} stage first")
    ckpt = load_checkpoint(path, cls.__name__)
    model = cls(**ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    return model.to(device or torch.device("cpu")).eval()


def load_latents(
    run_dir: str | os.PathLike, keys: tuple[str, ...] = LATENT_KEYS, steps: int | None = None
) -> tuple[list[dict], int]:
    """(episodes, z_size): the encoded episodes' ``keys`` in memory (about 0.5 KB per step),
    or only each episode's first ``steps`` steps (what a dream starts from)."""
    latents = Path(run_dir) / "latents"
    meta_path = latents / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no latents in {latents}; run the encode stage first")
    z_size = json.loads(meta_path.read_text())["z_size"]
    episodes = []
    for path in sorted(latents.glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            if missing := [key for key in keys if key not in npz.files]:
                raise ValueError(f"{path} has no {', '.join(missing)}: {_holds(npz.files)}")
            episode = {key: npz[key][:steps] for key in keys}
        if episode["mu"].shape[1] != z_size:
            raise ValueError(f"{path} has z_size {episode['mu'].shape[1]}, meta.json {z_size}")
        episode["index"] = int(path.stem)
        episodes.append(episode)
    if not episodes:
        raise FileNotFoundError(f"no encoded episodes in {latents}")
    return episodes, z_size


def _holds(keys: list[str]) -> str:
    """What a latents file with these keys holds, for an error message."""
    if set(keys) == {"mu", "logvar"}:  # what ``pretrained.unpack`` writes
        return ("it holds a dream start only, as in a run directory unpacked from a "
                "pretrained agent; train on a run that collected and encoded episodes")  # fmt: skip
    return f"it holds {', '.join(sorted(keys))}"
