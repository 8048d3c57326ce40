"""Shared fixtures: a tiny trained world model on synthetic latents (game: Doom)."""

from __future__ import annotations

import pytest
from worlds import Z, synthetic_latents, tiny_config

from worldmodels.stages.mdnrnn import train_mdnrnn
from worldmodels.train import save_checkpoint
from worldmodels.vae import ConvVAE


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    synthetic_latents(run_dir)
    results = train_mdnrnn(tiny_config(), run_dir)
    vae = ConvVAE(Z)
    save_checkpoint(run_dir / "vae" / "ckpt.pt", vae, None, None, {"done": True}, {})
    return run_dir, results
