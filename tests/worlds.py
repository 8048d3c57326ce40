"""Small synthetic world models for tests: latents of a known system and a tiny config."""

from __future__ import annotations

import json

import numpy as np

from worldmodels.stages.mdnrnn import MDNRNNConfig

Z = 4


def synthetic_latents(run_dir, episodes=12, seed=0, z_size=Z):
    """Episodes of a known system, z' = 0.8 z + 0.5 a + noise, that end when z[0] > 0.9
    (at most 40 steps), recorded as Doom's with a cap of 300 steps."""
    rng = np.random.default_rng(seed)
    (run_dir / "rollouts").mkdir(parents=True)
    meta = {"game": "doom_takecover", "env": {"max_steps": 300}}  # real games and dreams: 300
    (run_dir / "rollouts" / "meta.json").write_text(json.dumps(meta))
    (run_dir / "latents").mkdir()
    (run_dir / "latents" / "meta.json").write_text(json.dumps({"z_size": z_size}))
    for i in range(episodes):
        z, mu, action, ended = np.zeros(z_size), [], [], False
        while len(mu) < 40 and not ended:
            a = rng.uniform(-1, 1, 1)
            mu.append(z)
            action.append(a)
            z = 0.8 * z + 0.5 * a + 0.05 * rng.normal(size=z_size)
            ended = len(mu) > 3 and z[0] > 0.9
        mu, length = np.array(mu, np.float32), len(mu)
        np.savez(
            run_dir / "latents" / f"{i:06d}.npz",
            mu=mu, logvar=np.full((length, z_size), -6.0, np.float32),
            action=np.array(action, np.float32), reward=np.ones(length, np.float32),
            terminated=(np.arange(length) == length - 1) & ended,
            truncated=(np.arange(length) == length - 1) & ~ended,
        )  # fmt: skip


def tiny_config(**overrides) -> MDNRNNConfig:
    settings = dict(hidden_size=16, seq_len=10, batch_size=4, epochs=30, checkpoint_every=50,
                    lr=1e-2, val_every=4, precision="float32", device="cpu",
                    lr_decay=1.0)  # fmt: skip
    return MDNRNNConfig(**{**settings, **overrides})
