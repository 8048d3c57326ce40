"""Shared fixtures: a tiny trained world model on synthetic latents (game: Doom), the
smoke experiment run end to end by the command line, and a Ray cluster on this machine."""

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


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray cluster of three nodes on this machine (``ray.cluster_utils.Cluster``): a head
    that plays nothing and two 1-CPU nodes; this process is connected to it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
