"""V: architecture, loss, training loop with checkpoints and resumption, encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldmodels.artifacts import load_vae
from worldmodels.envs import DoomTakeCover
from worldmodels.rollouts import episode_path, episode_paths, read_episode, write_episode
from worldmodels.stages.encode import EncodeConfig, encode
from worldmodels.stages.vae import (
    VAEConfig,
    _fixed_batches,
    danger_frames,
    danger_recall,
    train_vae,
    validate_vae,
)
from worldmodels.train import load_checkpoint
from worldmodels.vae import ConvVAE


def synthetic_frames(n: int, rng: np.random.Generator) -> np.ndarray:
    """Frames with a coloured rectangle at a random place: easy to learn, not constant."""
    frames = np.full((n, 64, 64, 3), 40, dtype=np.uint8)
    for frame in frames:
        y, x = rng.integers(0, 48, 2)
        frame[y : y + 16, x : x + 16] = rng.integers(80, 255, 3)
    return frames


def make_rollouts(run_dir, episodes=6, length=20, seed=0):
    rng = np.random.default_rng(seed)
    (run_dir / "rollouts").mkdir(parents=True, exist_ok=True)
    (run_dir / "rollouts" / "meta.json").write_text(json.dumps({"game": "doom_takecover"}))
    for i in range(episodes):
        write_episode(
            episode_path(run_dir / "rollouts", i),
            {
                "obs": synthetic_frames(length, rng),
                "action": rng.uniform(-1, 1, (length, 1)).astype(np.float32),
                "reward": np.ones(length, np.float32),
                "terminated": np.arange(length) == length - 1,
                "truncated": np.zeros(length, bool),
                "seed": np.int64(i),
            },
        )


def tiny_config(**overrides) -> VAEConfig:
    settings = dict(z_size=8, batch_size=8, buffer_frames=64, val_every=4, val_frames=16,
                    checkpoint_every=3, precision="float32", device="cpu", epochs=2,
                    lr=1e-3)  # fmt: skip
    settings.update(overrides)
    return VAEConfig(**settings)


@pytest.mark.parametrize(("z_size", "count"), [(32, 4_348_547), (64, 4_446_915)])
def test_parameter_count_matches_paper(z_size, count):
    assert sum(p.numel() for p in ConvVAE(z_size).parameters()) == count


def test_shapes():
    model = ConvVAE(32)
    x = torch.rand(5, 3, 64, 64)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 32)
    recon = model.decode(mu)
    assert recon.shape == (5, 3, 64, 64)
    assert recon.min() >= 0 and recon.max() <= 1
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape


def test_loss_terms_and_free_bits():
    torch.manual_seed(0)
    model = ConvVAE(16, kl_tolerance=0.5)
    frames = torch.from_numpy(synthetic_frames(4, np.random.default_rng(0)))
    loss, logs = model.loss(frames)
    assert logs["kl"] < 0.5 * 16  # a fresh encoder's KL is small ...
    assert logs["kl_loss"] == pytest.approx(0.5 * 16)  # ... so the floor applies
    assert loss.item() == pytest.approx(logs["r_loss"] + logs["kl_loss"], rel=1e-6)
    # r_loss is the per-frame sum of squared errors, averaged over the batch.
    x = frames.permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(1)
    recon, _, _ = model(x)
    torch.manual_seed(1)
    _, logs = model.loss(frames)
    expected = (recon - x).square().sum((1, 2, 3)).mean().item()
    assert logs["r_loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_falls_on_a_tiny_dataset():
    torch.manual_seed(0)
    model = ConvVAE(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    frames = torch.from_numpy(synthetic_frames(32, np.random.default_rng(0)))
    losses = []
    for _ in range(40):
        loss, logs = model.loss(frames)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(logs["r_loss"])
    assert np.mean(losses[-5:]) < 0.5 * losses[0]


def test_training_writes_checkpoint_png_metrics_and_reloads(tmp_path):
    make_rollouts(tmp_path)
    config = tiny_config()
    results = train_vae(config, tmp_path)
    assert results["steps"] == 20  # 2 epochs of 10 batches: 4 training episodes x 20 frames / 8
    assert {"loss", "r_loss", "kl_loss", "kl", "precision"} <= set(results)
    assert json.loads((tmp_path / "vae" / "results.json").read_text()) == results
    assert (tmp_path / "vae" / "reconstructions.png").stat().st_size > 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("vae/train/loss" in line for line in lines)
    assert any("vae/val/loss" in line for line in lines)
    ckpt = load_checkpoint(tmp_path / "vae" / "ckpt.pt", "ConvVAE")
    assert {"model", "optimizer", "model_args", "progress", "config"} <= set(ckpt)
    # The checkpoint alone rebuilds the trained model: its held-out loss is the one the
    # stage measured at the end of training (a fresh V's is far higher).
    paths = episode_paths(tmp_path / "rollouts")
    val = _fixed_batches([p for p in paths if int(p.stem) % config.val_every == 0], config)
    reloaded = validate_vae(load_vae(tmp_path), val, torch.device("cpu"), "float32")
    assert reloaded["loss"] == pytest.approx(results["loss"], rel=1e-6)
    torch.manual_seed(0)
    fresh = validate_vae(ConvVAE(8), val, torch.device("cpu"), "float32")
    assert fresh["r_loss"] > 1.5 * results["r_loss"]
    # Running the finished stage again trains nothing more.
    assert train_vae(config, tmp_path)["steps"] == results["steps"]


def test_fireball_pixels_and_how_many_v_draws_back(tmp_path):
    frames = synthetic_frames(6, np.random.default_rng(0))
    frames[:3, 20:30, 20:30] = (240, 210, 90)  # a close fireball: 100 bright yellow pixels
    frames[3, :, :] = (200, 40, 40)  # the red damage flash is not a fireball
    frames[4, :, :] = (140, 100, 70)  # nor is a brown wall
    mask = DoomTakeCover.fireballs(frames)
    assert mask.reshape(6, -1).sum(1).tolist() == [100, 100, 100, 0, 0, 0]
    make_rollouts(tmp_path, episodes=1)
    path = episode_path(tmp_path / "rollouts", 0)
    episode = read_episode(path)
    episode["obs"][:] = 40  # grey, then three frames with the fireball
    episode["obs"][5:8] = frames[:3]
    write_episode(path, episode)
    found = danger_frames([path], DoomTakeCover.fireballs)
    np.testing.assert_array_equal(found, frames[:3])
    # an untrained V draws grey: none of the fireball comes back
    result = danger_recall(ConvVAE(8).eval(), found, DoomTakeCover.fireballs)
    assert result == {"recall": 0.0, "precision": 0.0, "frames": 3}


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    make_rollouts(a)
    make_rollouts(b)
    train_vae(tiny_config(), a)  # uninterrupted

    real_loss, calls = ConvVAE.loss, {"n": 0}

    def loss_then_killed(self, frames):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 8:  # killed in the middle of epoch 0
                raise KeyboardInterrupt
        return real_loss(self, frames)

    monkeypatch.setattr(ConvVAE, "loss", loss_then_killed)
    with pytest.raises(KeyboardInterrupt):
        train_vae(tiny_config(), b)
    saved = load_checkpoint(b / "vae" / "ckpt.pt", "ConvVAE")["progress"]
    assert saved["step"] == 6 and not saved["done"]  # checkpoint_every=3
    monkeypatch.setattr(ConvVAE, "loss", real_loss)
    train_vae(tiny_config(), b)  # resumes at step 6

    wa = load_checkpoint(a / "vae" / "ckpt.pt", "ConvVAE")
    wb = load_checkpoint(b / "vae" / "ckpt.pt", "ConvVAE")
    assert wa["progress"]["step"] == wb["progress"]["step"]
    for key, value in wa["model"].items():
        torch.testing.assert_close(wb["model"][key], value, rtol=0, atol=0, msg=key)


def test_encode_is_deterministic_and_keeps_the_episode(tmp_path):
    make_rollouts(tmp_path, episodes=3)
    train_vae(tiny_config(epochs=1), tmp_path)
    config = EncodeConfig(batch_size=7, precision="float32", device="cpu")
    stats = encode(config, tmp_path)
    assert stats["encoded"] == 3 and not stats["skipped"]
    first = dict(np.load(tmp_path / "latents" / "000001.npz"))
    assert first["mu"].shape == first["logvar"].shape == (20, 8)
    assert first["mu"].dtype == np.float32
    episode = np.load(tmp_path / "rollouts" / "000001.npz")
    for key in ("action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(first[key], episode[key])
    assert encode(config, tmp_path)["encoded"] == 0  # already done: skipped
    for path in (tmp_path / "latents").glob("*.npz"):
        path.unlink()
    encode(config, tmp_path)
    second = dict(np.load(tmp_path / "latents" / "000001.npz"))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


# --- bad input ------------------------------------------------------------------------------


def test_no_episodes_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no episodes found in .*rollouts"):
        train_vae(tiny_config(), tmp_path)


def test_fewer_frames_than_a_batch(tmp_path):
    make_rollouts(tmp_path, episodes=2, length=3)
    with pytest.raises(ValueError, match=r"1 training episodes with 3 frames in all, fewer than"):
        train_vae(tiny_config(), tmp_path)


def test_checkpoint_of_another_z_size_is_refused(tmp_path):
    make_rollouts(tmp_path)
    train_vae(tiny_config(epochs=1, max_steps=2), tmp_path)
    with pytest.raises(ValueError, match=r"made with z_size=8, this run has z_size=16"):
        train_vae(tiny_config(epochs=1, z_size=16), tmp_path)


def test_latents_of_another_z_size_are_refused(tmp_path):
    make_rollouts(tmp_path, episodes=3)
    train_vae(tiny_config(epochs=1), tmp_path)
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "meta.json").write_text('{"z_size": 32}')
    with pytest.raises(ValueError, match=r"latents with z_size=32, the VAE has z_size=8"):
        encode(EncodeConfig(precision="float32", device="cpu"), tmp_path)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    make_rollouts(tmp_path)
    real_loss, calls = ConvVAE.loss, {"n": 0}

    def loss_turning_nan(self, frames):
        loss, logs = real_loss(self, frames)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 5:
                return loss * float("nan"), {**logs, "loss": float("nan")}
        return loss, logs

    monkeypatch.setattr(ConvVAE, "loss", loss_turning_nan)
    with pytest.raises(FloatingPointError, match=r"at step 5; .*checkpoint, of step 3, is kept"):
        train_vae(tiny_config(), tmp_path)
    assert load_checkpoint(tmp_path / "vae" / "ckpt.pt", "ConvVAE")["progress"]["step"] == 3
