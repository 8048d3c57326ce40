"""Shared fixtures: a tiny trained world model on synthetic latents (game: Doom), and the
smoke experiment run end to end by the command line."""

from __future__ import annotations

import pytest
from commands import SMOKE, cli
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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(run_dir, CompletedProcess) of ``python -m worldmodels run experiments/smoke.yaml``."""
    run_dir = tmp_path_factory.mktemp("smoke")
    result = cli("run", SMOKE, f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result
