"""M and the dream: shapes, masking, training, gymnasium contract, temperature, seeding."""

from __future__ import annotations

import json
import math
import subprocess

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from worlds import Z, synthetic_latents, tiny_config

import worldmodels  # noqa: F401  (registers worldmodels/Dream-v0)
from mdn import sample_gaussian_mixture
from worldmodels.artifacts import load_latents
from worldmodels.dream import Dream
from worldmodels.mdnrnn import MDNRNN
from worldmodels.rollouts import split_held_out
from worldmodels.stages.mdnrnn import (
    SequenceBatches,
    baseline_nll,
    refit_done_head,
    train_mdnrnn,
    validate_mdnrnn,
)
from worldmodels.train import load_checkpoint


def test_paper_parameter_count():
    model = MDNRNN()  # Doom: LSTM 512, z 64, 1 action, restart flag, done head
    extra_bias = model.lstm.bias_hh_l0.numel()  # PyTorch keeps b_ih and b_hh; TF one bias
    assert sum(p.numel() for p in model.parameters()) - extra_bias == 1_678_785
    car = MDNRNN(32, 3, 256, restart_flag=False, predict_done=False)
    assert sum(p.numel() for p in car.parameters()) - 4 * 256 == 422_368


def test_forward_shapes():
    model = MDNRNN(z_size=6, action_dim=3, hidden_size=8, predict_reward=True)
    z, a, restart = torch.randn(2, 7, 6), torch.randn(2, 7, 3), torch.zeros(2, 7)
    params, done, reward, (h, c) = model(z, a, restart)
    assert params.mu.shape == params.sigma.shape == params.log_pi.shape == (2, 7, 6, 5)
    assert done.shape == reward.shape == (2, 7)
    assert h.shape == c.shape == (1, 2, 8)


def _batch(episodes):
    return next(SequenceBatches(episodes, seq_len=50, batch_size=10, seed=0).batches(0))


def test_padding_changes_nothing(tmp_path):
    synthetic_latents(tmp_path, episodes=5)
    episodes, _ = load_latents(tmp_path)
    batch = _batch(episodes)
    assert not batch["mask"].all()  # episodes of different lengths: some padding
    torch.manual_seed(0)
    model = MDNRNN(z_size=Z, action_dim=1, hidden_size=8, predict_reward=True)
    garbage = {k: v.clone() for k, v in batch.items()}
    pad = ~batch["mask"]
    for key in ("z", "z_next", "action"):
        garbage[key][pad] = 1e6
    for key in ("done", "reward", "restart"):
        garbage[key][pad] = 7.0
    losses, grads = [], []
    for b in (batch, garbage):
        model.zero_grad()
        loss, logs = model.loss(b)
        loss.backward()
        losses.append(logs)
        grads.append([p.grad.clone() for p in model.parameters()])
    assert losses[0] == losses[1]
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)


def test_windows_cover_every_step_once(tmp_path):
    synthetic_latents(tmp_path, episodes=6)
    episodes, _ = load_latents(tmp_path)
    batches = SequenceBatches(episodes, seq_len=7, batch_size=3, seed=1)
    windows = batches.windows(np.random.default_rng(0))
    for e, episode in enumerate(episodes):
        steps = sorted(t for w_e, s, end in windows if w_e == e for t in range(s, end))
        assert steps == list(range(len(episode["mu"])))
    total = restarts = ends = 0
    for batch in batches.batches(0):
        total += int(batch["mask"].sum())
        restarts += int(batch["restart"].sum())
        ends += int((batch["mask"] & ~batch["z_mask"]).sum())  # last step: no next z
        assert (batch["done"][~batch["mask"]] == 0).all()
    assert total == sum(len(e["mu"]) for e in episodes)
    assert restarts == ends == len(episodes)


@pytest.mark.parametrize("detached", [True, False])
def test_done_loss_trains_the_lstm_only_when_joint(tmp_path, detached):
    synthetic_latents(tmp_path, episodes=5)
    batch = _batch(load_latents(tmp_path)[0])
    model = MDNRNN(z_size=Z, action_dim=1, hidden_size=8, done_detached=detached)
    params, done_logit, _, _ = model(batch["z"], batch["action"], batch["restart"])
    done_logit.sum().backward()  # the done head's output alone
    assert model.done.weight.grad.abs().sum() > 0
    lstm_grad = sum(p.grad.abs().sum() for p in model.lstm.parameters() if p.grad is not None)
    assert (lstm_grad == 0) == detached
    assert all(p.grad is None for p in model.mdn.parameters())


def test_dropout_reaches_the_heads_in_training_never_the_state():
    torch.manual_seed(0)
    model = MDNRNN(z_size=6, action_dim=1, hidden_size=64, predict_reward=True, dropout=0.5)
    plain = MDNRNN(z_size=6, action_dim=1, hidden_size=64, predict_reward=True)
    plain.load_state_dict(model.state_dict())
    z, a, restart = torch.randn(2, 7, 6), torch.randn(2, 7, 1), torch.zeros(2, 7)
    model.eval()
    for x, y in zip(model(z, a, restart), plain(z, a, restart), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)  # eval: no dropout at all
    model.train()
    dropped, plain_out = model(z, a, restart), plain(z, a, restart)
    assert not torch.allclose(dropped[0].mu, plain_out[0].mu)
    assert not torch.allclose(dropped[1], plain_out[1]) and not torch.allclose(
        dropped[2], plain_out[2]
    )
    torch.testing.assert_close(dropped[3], plain_out[3], rtol=0, atol=0)  # the LSTM state
    # drop: M's rate whatever the mode, survivors scaled by 1 / (1 - p), seeded
    h = torch.rand(100, 1000) + 1
    out = model.drop(h, torch.Generator().manual_seed(3))
    assert torch.equal(out, model.drop(h, torch.Generator().manual_seed(3)))
    assert 0.47 < (out == 0).float().mean() < 0.53
    torch.testing.assert_close(out[out != 0], (h * 2)[out != 0])
    assert plain.drop(h) is h
    with pytest.raises(ValueError, match="dropout must be in"):
        MDNRNN(dropout=1.0)


def test_a_dream_of_a_dropout_m_predicts_through_dropped_states(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir, temperature=1.0)
    dream.mdnrnn.dropout = 0.3
    action = torch.rand(50, 1) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    state, *_ = dream.step(dream.reset(50, gen), action, gen)
    # the same by hand: the LSTM step, a mask from the dream's generator, the heads
    m, gen = dream.mdnrnn, torch.Generator().manual_seed(0)
    start = dream.reset(50, gen)
    with torch.no_grad():
        _, (h, c) = m.states(start.z.unsqueeze(1), action.unsqueeze(1), torch.ones(50, 1), None)
        params, _, _ = m.heads(m.drop(h[0], gen))
        z = sample_gaussian_mixture(params, 1.0, gen)
    torch.testing.assert_close(state.h, h[0], rtol=0, atol=0)  # the state is never dropped
    torch.testing.assert_close(state.z, z, rtol=0, atol=0)
    with torch.no_grad():
        assert not torch.allclose(params.mu, m.heads(h[0])[0].mu)  # the mask did drop


def test_training_learns_the_dynamics(trained_run):
    run_dir, results = trained_run
    assert results["z_nll_per_dim"] < results["baseline_z_nll_per_dim"] - 0.3
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [x["mdnrnn/train/loss"] for x in lines if "mdnrnn/train/loss" in x]
    assert np.mean(train[-5:]) < np.mean(train[:5]) - 1.0
    assert results["done_recall"] >= 0.5  # the ends are predictable from z: z[0] > 0.9
    assert results["done_refit"]["val_done_loss"] <= results["done_refit"]["joint_val_done_loss"]
    assert results["done_loss"] == pytest.approx(results["done_refit"]["val_done_loss"], rel=1e-4)


def test_done_precision_and_recall_count_real_steps_only():
    model = MDNRNN(z_size=3, action_dim=1, hidden_size=8)
    b, t = 2, 6
    batch = {"z": torch.randn(b, t, 3), "z_next": torch.randn(b, t, 3),
             "action": torch.zeros(b, t, 1), "restart": torch.zeros(b, t),
             "reward": torch.zeros(b, t), "done": torch.zeros(b, t),
             "mask": torch.ones(b, t, dtype=torch.bool),
             "z_mask": torch.ones(b, t, dtype=torch.bool)}  # fmt: skip
    batch["mask"][1, 4:] = batch["z_mask"][1, 3:] = False  # row 1 is 4 steps, then padding
    batch["done"][0, 5] = batch["done"][1, 3] = 1.0  # both episodes end
    torch.nn.init.zeros_(model.done.weight)
    with torch.no_grad():
        model.done.bias.fill_(1.0)  # "done" at every step
    logs = validate_mdnrnn(model, [batch], torch.device("cpu"), "float32")
    assert logs["done_recall"] == 1.0 and logs["done_precision"] == 2 / 10  # 10 real steps
    with torch.no_grad():
        model.done.bias.fill_(-1.0)  # never
    logs = validate_mdnrnn(model, [batch], torch.device("cpu"), "float32")
    assert logs["done_recall"] == 0.0 and logs["done_precision"] == 0.0


def test_baseline_is_the_gaussian_nll_of_z_steps():
    rng = np.random.default_rng(0)

    def batch(n):  # z_(t+1) - z_t ~ N(0.3, 0.5^2) in every dimension
        z = torch.from_numpy(rng.normal(size=(n, 50, 2)).astype(np.float32))
        step = torch.from_numpy(rng.normal(0.3, 0.5, (n, 50, 2)).astype(np.float32))
        return {"z": z, "z_next": z + step, "z_mask": torch.ones(n, 50, dtype=torch.bool)}

    nll = baseline_nll([batch(200) for _ in range(5)], [batch(200)])
    assert nll == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 0.25), abs=0.01)


def test_learning_rate_decays_as_the_original(tmp_path):
    synthetic_latents(tmp_path)
    config = tiny_config(lr=1e-2, min_lr=1e-3, lr_decay=0.9, epochs=2)
    results = train_mdnrnn(config, tmp_path)
    ckpt = load_checkpoint(tmp_path / "mdnrnn" / "ckpt.pt", "MDNRNN")
    lr = ckpt["optimizer"]["param_groups"][0]["lr"]
    steps = results["steps"]
    assert steps > 5 and lr == pytest.approx(1e-3 + (1e-2 - 1e-3) * 0.9**steps)


def test_done_refit_fits_a_fresh_head_and_touches_nothing_else(trained_run):
    run_dir, _ = trained_run
    episodes, _ = load_latents(run_dir)
    train, val = split_held_out(episodes, val_every=4)
    batches = SequenceBatches(train, seq_len=10, batch_size=4, seed=0)
    val_batches = list(SequenceBatches(val, 10, 4, 0).batches(0))
    ckpt = load_checkpoint(run_dir / "mdnrnn" / "ckpt.pt", "MDNRNN")
    model = MDNRNN(**ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    rest = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("done.")}
    with torch.no_grad():  # a joint head that predicts the opposite: the refit must replace it
        model.done.weight.mul_(-1)
        model.done.bias.fill_(5.0)
    cpu = torch.device("cpu")
    before = validate_mdnrnn(model, val_batches, cpu, "float32")
    found = refit_done_head(model, batches.batches(0), val_batches, 200, cpu, "float32")
    after = validate_mdnrnn(model, val_batches, cpu, "float32")
    assert found["joint_val_done_loss"] == pytest.approx(before["done_loss"], rel=1e-4)
    assert found["step"] > 0 and found["val_done_loss"] < 0.5 * before["done_loss"]
    assert after["done_loss"] == pytest.approx(found["val_done_loss"], rel=1e-4)
    # It reads the states: better than the best constant prediction of the held-out ends.
    done = torch.cat([b["done"][b["mask"]] for b in val_batches])
    odds = model.done_pos_weight * done.sum() / (1 - done).sum()  # the best constant logit
    constant = torch.full_like(done, math.log(odds))
    best_constant = model.done_loss(constant, done).item()
    assert found["val_done_loss"] < 0.8 * best_constant
    for key, value in model.state_dict().items():
        if key in rest:
            assert torch.equal(value, rest[key]), key


def test_a_finished_run_is_not_refit_again(trained_run):
    run_dir, results = trained_run
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert "mdnrnn/done_refit/val_done_loss" in metrics
    assert train_mdnrnn(tiny_config(), run_dir) == results
    assert (run_dir / "metrics.jsonl").read_text() == metrics


@pytest.mark.filterwarnings("ignore:.*Box observation space m..imum value is")
def test_dream_env_passes_gymnasium_checker(trained_run):
    run_dir, _ = trained_run
    env = gym.make("worldmodels/Dream-v0", run_dir=run_dir, temperature=1.15)
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (Z + 2 * 16,)  # Doom: [z, c, h]
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_vector_dream_steps_and_autoresets(trained_run):
    run_dir, _ = trained_run
    envs = gym.make_vec("worldmodels/Dream-v0", num_envs=8, run_dir=run_dir, max_steps=5)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (8, Z + 32)
    ended_before = np.zeros(8, bool)
    for _ in range(12):
        obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert obs.shape == (8, Z + 32)
        # A dream that ended last step restarts now: zero reward, fresh zero LSTM state.
        assert (reward[ended_before] == 0).all()
        assert (obs[ended_before, Z:] == 0).all()
        assert (reward[~ended_before] == 1).all()
        ended_before = terminated | truncated
    assert envs.render().shape == (8, 64, 64, 3)


def test_same_seed_same_dream_and_temperature_widens_spread(trained_run):
    run_dir, _ = trained_run

    def trajectories(seed, tau):
        dream = Dream.from_run_dir(run_dir, temperature=tau, max_steps=6)
        gen = torch.Generator().manual_seed(seed)
        state = dream.reset(400, gen)
        state = state._replace(z=state.z[:1].expand_as(state.z))  # same start for all
        for _ in range(5):
            state, *_ = dream.step(state, torch.zeros(400, 1), gen)
        return state.z

    a, b, c = trajectories(0, 1.0), trajectories(0, 1.0), trajectories(1, 1.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    spread = {tau: trajectories(0, tau).std(0).mean().item() for tau in (0.1, 1.0, 1.6)}
    assert spread[0.1] < spread[1.0] < spread[1.6]


def test_dream_step_is_m_over_the_sequence_and_bf16_stays_close(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir)
    state = dream.reset(32, torch.Generator().manual_seed(0))
    zs, actions = [state.z], torch.rand(3, 32, 1) * 2 - 1
    for action in actions:
        state, *_ = dream.step(state, action, torch.Generator().manual_seed(1))
        zs.append(state.z)
    # Teacher-forced over the dream's own z's: the same LSTM state, restart flag included.
    restart = torch.zeros(32, 3, dtype=torch.bool)
    restart[:, 0] = True
    z = torch.stack(zs[:3], 1)
    with torch.no_grad():
        out, (h, c) = dream.mdnrnn.states(z, actions.transpose(0, 1), restart)
    torch.testing.assert_close(out[:, -1], state.h, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c[0], state.c, rtol=1e-5, atol=1e-5)
    bf16 = Dream.from_run_dir(run_dir, precision="bfloat16")
    first = bf16.step(bf16.reset(32, torch.Generator().manual_seed(0)), actions[0])[0]
    exact = dream.step(dream.reset(32, torch.Generator().manual_seed(0)), actions[0])[0]
    assert first.h.dtype == torch.float32
    torch.testing.assert_close(first.h, exact.h, rtol=0, atol=0.03)
    assert (first.h - exact.h).abs().max() > 0  # it did compute in bf16


def test_rollout_drops_finished_dreams(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir, max_steps=30)
    seen = []

    def policy(obs, index):
        seen.append(len(index))
        return torch.zeros(len(index), 1)

    returns, lengths = dream.rollout(policy, 64, torch.Generator().manual_seed(0))
    assert returns.shape == lengths.shape == (64,)
    torch.testing.assert_close(returns, lengths.float())  # +1 per step survived
    assert seen[0] == 64 and seen == sorted(seen, reverse=True)
    assert len(seen) == lengths.max().item() and seen[-1] == (lengths == lengths.max()).sum()


def test_the_dream_ends_where_the_runs_real_episodes_were_capped(trained_run, tmp_path):
    run_dir, _ = trained_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    meta = copy / "rollouts" / "meta.json"
    meta.write_text(json.dumps({"game": "doom_takecover"}))  # no cap recorded: the game's
    assert Dream.from_run_dir(copy).max_steps == 2100
    meta.write_text(json.dumps({"game": "doom_takecover", "env": {"max_steps": 7}}))
    dream = Dream.from_run_dir(copy)
    with torch.no_grad():  # a done head that never fires: every dream runs to the cap
        dream.mdnrnn.done.weight.zero_()
        dream.mdnrnn.done.bias.fill_(-1e4)
    returns, lengths = dream.rollout(lambda obs, i: torch.zeros(len(i), 1), 16,
                                     torch.Generator().manual_seed(0))  # fmt: skip
    assert lengths.tolist() == [7] * 16
    assert Dream.from_run_dir(copy, max_steps=3).max_steps == 3  # an explicit cap wins


def test_a_dream_from_a_later_step_starts_where_m_stood_beside_the_real_episode(trained_run):
    run_dir, _ = trained_run
    start = 20
    episodes, _ = load_latents(run_dir)
    reaching = [e for e in episodes if len(e["mu"]) > start]
    assert 0 < len(reaching) < len(episodes)  # the short episodes cannot start a dream
    dream = Dream.from_run_dir(run_dir, start=start, max_steps=30)
    assert len(dream.initial_mu) == len(reaching)
    for i, e in enumerate(reaching):  # M over the episode's first 20 real steps, one by one
        h = c = torch.zeros(1, 1, dream.hidden_size)
        with torch.no_grad():
            for t in range(start):
                z, a = (torch.from_numpy(e[k][t])[None, None] for k in ("mu", "action"))
                _, (h, c) = dream.mdnrnn.states(z, a, torch.tensor([[t == 0]]), (h, c))
        torch.testing.assert_close(dream.initial_h[i], h[0, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dream.initial_c[i], c[0, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dream.initial_mu[i], torch.from_numpy(e["mu"][start]))
    state = dream.reset(16, torch.Generator().manual_seed(1))
    assert state.t.tolist() == [start] * 16
    gap = (state.h[:, None] - dream.initial_h[None]).abs().amax(-1)  # [16, E]
    assert gap.min(1).values.max() == 0  # every dream's h is one episode's warmed-up h
    with torch.no_grad():  # a done head that never fires: the dream ends at the same cap
        dream.mdnrnn.done.weight.zero_()
        dream.mdnrnn.done.bias.fill_(-1e4)
    _, lengths = dream.rollout(lambda obs, i: torch.zeros(len(i), 1), 8)
    assert lengths.tolist() == [30 - start] * 8
    with pytest.raises(ValueError, match="no episode in .*latents reaches step 40"):
        Dream.from_run_dir(run_dir, start=40)


def test_bad_action_shape_names_both(trained_run):
    run_dir, _ = trained_run
    env = gym.make("worldmodels/Dream-v0", run_dir=run_dir)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expects actions of shape \(1,\), got \(3,\)"):
        env.step(np.zeros(3, np.float32))
    dream = Dream.from_run_dir(run_dir)
    with pytest.raises(ValueError, match=r"action must have shape \(2, 1\).*got \(2, 3\)"):
        dream.step(dream.reset(2), torch.zeros(2, 3))


def test_mismatched_checkpoint_and_latents_are_refused(trained_run, tmp_path):
    run_dir, _ = trained_run
    with pytest.raises(ValueError, match=r"made with hidden_size=16, this run has hidden_size=32"):
        train_mdnrnn(tiny_config(hidden_size=32), run_dir)
    other = tmp_path / "other"
    synthetic_latents(other, z_size=8)
    (other / "mdnrnn").mkdir()
    ckpt = load_checkpoint(run_dir / "mdnrnn" / "ckpt.pt", "MDNRNN")
    torch.save(ckpt, other / "mdnrnn" / "ckpt.pt")
    with pytest.raises(ValueError, match=r"z_size=8 but the MDN-RNN .* has z_size=4"):
        Dream.from_run_dir(other)


def test_calibration_scores_both_worlds(trained_run):
    from worldmodels.calibrate import (
        HeldUniform,
        NoOp,
        calibrate,
        dream_lengths,
        real_lengths,
        report,
    )

    class Right(NoOp):
        def __call__(self, obs, index):
            return torch.ones(len(index), 1)

    run_dir, _ = trained_run
    # The synthetic world ends when z[0] > 0.9, with z' = 0.8 z + 0.5 a + noise: standing
    # still keeps z[0] near 0 (lives to the cap), pushing right ends it within a few steps.
    dream = Dream.from_run_dir(run_dir, max_steps=50)
    result = calibrate(dream, "doom_takecover", episodes=4,
                       policies={"noop": NoOp, "random": HeldUniform, "right": Right})  # fmt: skip
    assert result["noop"]["dream_length_mean"] >= 40
    assert result["right"]["dream_length_mean"] <= 10
    lengths, _ = dream_lengths(dream, "doom_takecover", NoOp, 4, seed=0)
    assert result["noop"]["dream_length_mean"] == lengths.mean()
    # Doom at skill 4: standing still lives about 160 steps (fireballs kill in 1-3 hits)
    assert 60 <= result["noop"]["real_length_mean"] <= 400
    for policy in ("noop", "random", "right"):
        # Survival: the return is the length, in both worlds.
        assert result[policy]["real_return_mean"] == result[policy]["real_length_mean"]
        assert result[policy]["dream_return_mean"] == result[policy]["dream_length_mean"]
    assert result["done"] == "logit"
    assert "(" in report(result).splitlines()[1]  # the other done rule, in brackets
    a, _ = real_lengths("doom_takecover", HeldUniform, 3, seed=5)
    b, _ = real_lengths("doom_takecover", HeldUniform, 3, seed=5)
    assert (a == b).all()


def test_calibration_takes_any_blind_policy(trained_run):
    from worldmodels.calibrate import calibrate, report

    run_dir, _ = trained_run
    calls = []  # (dreams the policy was made for, dreams asked for)

    class Right:
        def __init__(self, n, low, high, generator=None):
            self.n = n

        def __call__(self, obs, index):
            calls.append((self.n, len(index)))
            return torch.ones(len(index), 1)

    dream = Dream.from_run_dir(run_dir, max_steps=50)
    result = calibrate(dream, "doom_takecover", episodes=2, policies={"right": Right})
    assert result["policies"] == ["right"] and "right" in report(result)
    r = result["right"]
    assert calls.count((1, 1)) == 2 * r["real_length_mean"]  # the real game: a call a step
    dream_steps = sum(k for n, k in calls if n == 2)  # both done rules' dreams
    assert dream_steps == 2 * (r["dream_length_mean"] + r["dream_sample_length_mean"])


@pytest.mark.parametrize(("game", "header", "row"), [
    ("doom_takecover", "| policy | real game | dream | dream / real |",
     "| noop | 160.0 | 320.0 | 2.00 |"),
    ("carracing", "| policy | real game | dream | real length | dream length |",
     "| noop | -50.0 | 25.0 | 160 | 320 |"),
])  # fmt: skip
def test_calibration_table_shows_what_the_controller_is_scored_by(tmp_path, game, header, row):
    # Doom's return is its length; CarRacing's is the reward, which the dream predicts.
    from worldmodels.stages.calibrate import summary

    stats = {f"{world}_{measure}_{stat}": value
             for world, length, ret in (("real", 160.0, -50.0), ("dream", 320.0, 25.0))
             for measure, value in (("length", length), ("return", ret))
             for stat in ("mean", "std")}  # fmt: skip
    result = {"noop": stats, "policies": ["noop"], "episodes": 4, "temperature": 1.0,
              "done": "logit", "game": game}  # fmt: skip
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "results.json").write_text(json.dumps(result))
    lines = summary(tmp_path)
    assert header in lines and row in lines
