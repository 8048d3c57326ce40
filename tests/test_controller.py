"""C, CMA-ES and evaluation: sizes, squashing, the ES loop, determinism, resumption."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from worldmodels.agent import Agent, agent_args
from worldmodels.calibrate import calibrate
from worldmodels.controller import Controller, squash
from worldmodels.dream import Dream
from worldmodels.envs import DoomTakeCover, get_game
from worldmodels.mdnrnn import MDNRNN
from worldmodels.stages.controller import (
    ControllerConfig,
    cma_means,
    dream_fitness,
    episode_seeds,
    evolve,
    load_controller,
    play_dreams,
    train_controller,
)
from worldmodels.stages.evaluate import EvaluateConfig, evaluate, spearman
from worldmodels.stages.evaluate import summary as evaluate_summary
from worldmodels.vae import ConvVAE


def paper_controller(game: str, z: int, h: int) -> Controller:
    g = get_game(game)
    obs = z + h * (2 if g.survival else 1)
    return Controller(obs, g.action_dim, g.controller_bias, g.squash)


def test_parameter_counts_match_paper():
    assert paper_controller("doom_takecover", 64, 512).n_params == 1088
    assert paper_controller("carracing", 32, 256).n_params == 867


def test_squash_ranges():
    y = torch.randn(1000, 3) * 10
    car = squash(y, "carracing")
    assert car[:, 0].min() >= -1 and car[:, 0].max() <= 1
    assert car[:, 1].min() >= 0 and car[:, 1].max() <= 1
    assert car[:, 2].min() >= 0 and car[:, 2].max() <= 1
    assert (car[:, 2] == 0).any() and (car[:, 2] > 0).any()
    doom = squash(y[:, :1], "tanh")
    assert doom.abs().max() <= 1


def test_max_pedal_bounds_carracing_gas_and_brake_in_the_game_too():
    y = torch.randn(1000, 3) * 10
    full, half = squash(y, "carracing"), squash(y, "carracing", max_pedal=0.5)
    torch.testing.assert_close(half[:, 0], full[:, 0], rtol=0, atol=0)  # steering as before
    torch.testing.assert_close(half[:, 1:], full[:, 1:] * 0.5, rtol=0, atol=0)
    c = Controller(obs_size=7, action_dim=3, bias=True, squash_kind="carracing", max_pedal=0.5)
    assert Controller(**c.spec).max_pedal == 0.5
    for bad, message in ((0.0, "max_pedal must be in"), (1.5, "max_pedal must be in")):
        with pytest.raises(ValueError, match=message):
            Controller(7, 3, True, "carracing", max_pedal=bad)
    with pytest.raises(ValueError, match="squash 'tanh' has none, got max_pedal=0.5"):
        Controller(7, 1, False, "tanh", max_pedal=0.5)
    # a real CarRacing episode: full gas and brake asked, at most max_pedal given
    vae, mdnrnn = ConvVAE(z_size=8), MDNRNN(z_size=8, action_dim=3, hidden_size=16)
    for spec, most in ((None, 1.0), (Controller(24, 3, True, "carracing", 0.5).spec, 0.5)):
        agent = Agent("carracing", {"max_steps": 5}, vae, mdnrnn, spec)
        given, step = [], agent.env.step

        def recording_step(action, given=given, step=step):
            given.append(action)
            return step(action)

        agent.env.step = recording_step
        params = np.zeros(agent.controller.n_params, np.float32)
        params[-2:] = 10.0  # bias: gas and brake as high as the squash goes
        assert agent.play(params, seed=0)["length"] == 5
        np.testing.assert_allclose(np.array(given)[:, 1:], most, rtol=1e-6)


def test_batched_controllers_equal_single_ones():
    c = Controller(obs_size=7, action_dim=3, bias=True, squash_kind="carracing")
    params = torch.randn(4, c.n_params)
    obs = torch.randn(10, 7)
    which = torch.randint(0, 4, (10,))
    batched = c.act_batched(params, which, obs)
    single = torch.stack([c.act(params[w], o[None])[0] for w, o in zip(which, obs, strict=True)])
    torch.testing.assert_close(batched, single)
    with pytest.raises(ValueError, match="has 24 parameters, got a vector of 5"):
        c.act(torch.zeros(5), obs)


def test_cma_es_loop_solves_a_quadratic(tmp_path):
    target = np.linspace(-0.5, 0.5, 10)

    def fitness(candidates, generation):
        return -((candidates - target) ** 2).sum(1)

    config = ControllerConfig(generations=80, popsize=16, sigma0=0.3, eval_every=20)
    saved = {}
    state = evolve(10, fitness, config, tmp_path, lambda m, g: {"score": fitness(m[None], g)[0]},
                   lambda params, best: saved.update(params=params))  # fmt: skip
    assert state["best"]["score"] > -1e-3
    np.testing.assert_allclose(saved["params"], target, atol=0.03)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 80


def test_resumed_es_equals_uninterrupted(tmp_path):
    def fitness(candidates, generation):
        return -np.abs(candidates - 0.3).sum(1)

    config = ControllerConfig(generations=6, popsize=8, eval_every=2)
    evaluate_mean = lambda m, g: {"score": float(fitness(m[None], g)[0])}  # noqa: E731
    saved = {"a": {}, "b": {}}
    whole = evolve(5, fitness, config, tmp_path / "a", evaluate_mean,
                   lambda p, b: saved["a"].update(params=p))  # fmt: skip

    def dying(candidates, generation):
        if generation == 3:
            raise KeyboardInterrupt  # killed during generation 4
        return fitness(candidates, generation)

    keep_b = lambda p, b: saved["b"].update(params=p)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        evolve(5, dying, config, tmp_path / "b", evaluate_mean, keep_b)
    assert len(json.loads((tmp_path / "b" / "es_state.json").read_text())["fitness"]) == 3
    resumed = evolve(5, fitness, config, tmp_path / "b", evaluate_mean, keep_b)
    assert resumed["fitness"] == whole["fitness"]
    assert resumed["best"] == whole["best"]
    np.testing.assert_array_equal(saved["a"]["params"], saved["b"]["params"])
    # a search of other controllers is not resumed: C acting every 8 steps is another C
    other = ControllerConfig(generations=8, popsize=8, eval_every=2, repeat=8)
    with pytest.raises(ValueError, match="made with repeat=1, this run has repeat=8; use --force"):
        evolve(5, fitness, other, tmp_path / "b", evaluate_mean, keep_b)


def test_resume_tolerates_rounding_and_refuses_other_candidates(tmp_path):
    """A replay on another BLAS thread count or CPU finds the candidates again up to the
    last bits: that resumes; candidates that really differ are refused."""

    def fitness(candidates, generation):
        return -np.abs(candidates - 0.3).sum(1)

    evolve(5, fitness, ControllerConfig(generations=2, popsize=8), tmp_path)
    path = tmp_path / "es_state.json"
    made = json.loads(path.read_text())
    for scale, resumes in ((1 + 1e-12, True), (1 + 1e-3, False)):
        state = {**made, "fingerprints": [[x * scale for x in f] for f in made["fingerprints"]]}
        path.write_text(json.dumps(state))
        more = ControllerConfig(generations=3, popsize=8)
        if resumes:
            assert len(evolve(5, fitness, more, tmp_path)["fitness"]) == 3
        else:
            with pytest.raises(RuntimeError, match=r"es_state.json: replay diverged at gener"):
                evolve(5, fitness, more, tmp_path)
    # a state from before fingerprints (exact hashes) resumes, its generations unchecked
    older = {k: v for k, v in made.items() if k != "fingerprints"} | {"checksums": ["ab", "cd"]}
    path.write_text(json.dumps(older))
    resumed = evolve(5, fitness, ControllerConfig(generations=3, popsize=8), tmp_path)
    assert resumed["fitness"][:2] == made["fitness"] and len(resumed["fingerprints"]) == 3
    assert resumed["fingerprints"][:2] == [None, None] and "checksums" not in resumed


def test_population_too_small_is_refused(tmp_path):
    with pytest.raises(ValueError, match="popsize must be >= 2 for CMA-ES, got 1"):
        evolve(3, lambda c, g: np.zeros(len(c)), ControllerConfig(popsize=1), tmp_path)


def test_dream_fitness_is_deterministic(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir, max_steps=50)
    c = Controller(dream.obs_size, 1, False, "tanh")
    fitness = dream_fitness(dream, c, episodes=4, seed=3)
    candidates = np.random.default_rng(0).normal(0, 0.5, (5, c.n_params))
    a, b = fitness(candidates, 2), fitness(candidates, 2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5,)
    # each candidate's fitness is its own mean over its 4 dreams, equal to playing it alone
    # on the same dreams: candidate k's dreams are k*4 .. k*4+3 of the generation's batch
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 2)
    params = torch.as_tensor(candidates, dtype=torch.float32)
    which = torch.arange(20) // 4
    returns, lengths = dream.rollout(lambda obs, i: c.act_batched(params, which[i], obs), 20, gen)
    np.testing.assert_allclose(a, returns.view(5, 4).mean(1).numpy())
    assert (returns == lengths).all()  # Doom: +1 per step survived


def test_changes_of_move_in_the_dream(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir, max_steps=50)
    c = Controller(dream.obs_size, 1, False, "tanh")
    candidates = np.random.default_rng(1).normal(0, 0.5, (4, c.n_params))
    candidates[0] = 0  # always action 0: stays, never changes its move
    gen = torch.Generator().manual_seed(5)
    returns, changes = play_dreams(dream, c, candidates, 3, gen, DoomTakeCover.move)
    # counted again from each dream's moves, recorded step by step on the same dreams
    moves, params = [[] for _ in range(12)], torch.as_tensor(candidates).float()
    which = torch.arange(12) // 3

    def recording(obs, index):
        action = c.act_batched(params, which[index], obs)
        for i, a in zip(index.tolist(), action[:, 0].tolist(), strict=True):
            moves[i].append(-1 if a < -1 / 3 else (1 if a > 1 / 3 else 0))
        return action

    again, _ = dream.rollout(recording, 12, torch.Generator().manual_seed(5))
    np.testing.assert_allclose(returns, again.view(4, 3).mean(1).numpy())
    for k in range(4):
        mine = moves[3 * k : 3 * k + 3]
        expected = 100 * sum(np.count_nonzero(np.diff(m)) for m in mine) / sum(map(len, mine))
        assert changes[k] == pytest.approx(expected)
    assert changes[0] == 0 and changes.max() > 0
    # the fitness is the mean return of the same dreams, counted or not
    plain = dream_fitness(dream, c, 3, seed=0)(candidates, 5)
    np.testing.assert_allclose(plain, returns)


def test_action_repeat_holds_cs_action_in_the_dream(trained_run):
    run_dir, _ = trained_run
    dream = Dream.from_run_dir(run_dir, max_steps=50)
    c = Controller(dream.obs_size, 1, False, "tanh", repeat=4)
    assert Controller(**c.spec).repeat == 4
    assert Controller(**{**c.spec, "repeat": 1}).spec == Controller(dream.obs_size, 1, False,
                                                                     "tanh").spec  # fmt: skip
    candidates = np.random.default_rng(2).normal(0, 0.5, (4, c.n_params))
    returns, changes = play_dreams(dream, c, candidates, 3, torch.Generator().manual_seed(5),
                                   DoomTakeCover.move)  # fmt: skip
    # the same dreams, each one's action chosen on its own steps 0, 4, 8, ... and kept
    params, which = torch.as_tensor(candidates).float(), torch.arange(12) // 3
    age, kept, moves = [0] * 12, {}, [[] for _ in range(12)]

    def holding(obs, index):
        rows = []
        for row, i in enumerate(index.tolist()):
            if age[i] % 4 == 0:
                kept[i] = c.act(params[which[i]], obs[row : row + 1])[0]
            age[i] += 1
            moves[i].append(DoomTakeCover.move(kept[i][:1]).item())
            rows.append(kept[i])
        return torch.stack(rows)

    again, lengths = dream.rollout(holding, 12, torch.Generator().manual_seed(5))
    np.testing.assert_allclose(returns, again.view(4, 3).mean(1).numpy(), rtol=1e-6)
    for k in range(4):
        mine = moves[3 * k : 3 * k + 3]
        expected = 100 * sum(np.count_nonzero(np.diff(m)) for m in mine) / sum(map(len, mine))
        assert changes[k] == pytest.approx(expected)
    assert changes.max() > 0  # the moves do change, on C's steps only:
    for m in moves:
        assert all(m[t] == m[t - 1] for t in range(1, len(m)) if t % 4)
    # and they are other dreams than those of C acting every step
    plain = Controller(dream.obs_size, 1, False, "tanh")
    every_step, _ = play_dreams(dream, plain, candidates, 3, torch.Generator().manual_seed(5))
    assert not np.allclose(every_step, returns)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_action_repeat_must_be_a_whole_number_from_1(bad):
    with pytest.raises(ValueError, match=f"repeat must be a whole number >= 1, got {bad!r}"):
        Controller(7, 1, False, "tanh", repeat=bad)


def test_action_repeat_holds_cs_action_in_the_game(trained_run):
    run_dir, _ = trained_run
    spec = Controller(4 + 2 * 16, 1, False, "tanh", repeat=3).spec
    params = np.random.default_rng(4).normal(0, 0.5, 4 + 2 * 16).astype(np.float32)
    given = {}
    for repeat in (1, 3):
        vae, mdnrnn = agent_args(run_dir)[2:]
        agent = Agent("doom_takecover", {"max_steps": 40}, vae, mdnrnn, {**spec, "repeat": repeat})
        actions, step = [], agent.env.step

        def recording_step(action, actions=actions, step=step):
            actions.append(float(action[0]))
            return step(action)

        agent.env.step = recording_step
        played = agent.play(params, seed=7)
        assert played["length"] == len(actions) > 8
        given[repeat] = actions.copy()
        # exploring without exploration plays the same held actions
        actions.clear()
        explored = agent.explore(params, 7, chance=0.0, hold=5, policy={})
        assert actions == given[repeat]
        np.testing.assert_allclose(explored["action"][:, 0], actions, rtol=1e-6)
    held = given[3]
    assert all(held[t] == held[t - 1] for t in range(1, len(held)) if t % 3)
    assert len(set(held)) > 1  # C acted again on steps 3, 6, ...
    assert any(a != b for a, b in zip(given[1], given[1][1:], strict=False))  # unheld: changes
    assert held[0] == given[1][0]  # the first step is the same choice


def test_controller_and_evaluation_end_to_end(trained_run):
    run_dir, _ = trained_run
    config = ControllerConfig(generations=2, popsize=4, episodes=2, eval_every=1,
                              eval_episodes=8, workers=0)  # fmt: skip
    state = train_controller(config, run_dir)
    assert len(state["history"]) == 2
    assert all(h["eval"]["changes"] >= 0 for h in state["history"])  # Doom: counted
    # the kept controller is the CMA-ES mean with the best dream score of the evaluations
    scores = [h["eval"]["dream"] for h in state["history"]]
    assert state["best"]["generation"] == 1 + int(np.argmax(scores))
    assert state["best"]["dream"] == max(scores)
    assert (run_dir / "controller" / "history.png").stat().st_size > 0
    controller, params = load_controller(run_dir)
    assert params.shape == (controller.n_params,) == (4 + 2 * 16,)
    # the CMA-ES means, replayed: best.pt is the best generation's
    means = cma_means(run_dir, 10)
    assert [g for g, _ in means] == [1, 2]
    np.testing.assert_array_equal(means[state["best"]["generation"] - 1][1], params)
    assert not np.array_equal(means[0][1], means[1][1])

    config = EvaluateConfig(episodes=3, dream_episodes=8, workers=0, rank_episodes=2)
    results = evaluate(config, run_dir)
    saved = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    # each column is what its own policy scores on those seeds, played here directly
    agent = Agent.from_run_dir(run_dir)
    assert saved["real"]["scores"] == [agent.play(params, s)["return"] for s in saved["seeds"]]
    assert saved["random_policy"]["scores"] == [
        agent.play(None, s)["return"] for s in saved["seeds"]
    ]
    for key in ("real", "random_policy"):
        assert {"mean", "std", "min", "max"} <= set(saved[key])
        assert saved[key]["mean"] == pytest.approx(np.mean(saved[key]["scores"]))
    in_dream = dream_fitness(Dream.from_run_dir(run_dir), controller, 8, EvaluateConfig().seed)
    assert saved["dream"]["mean"] == pytest.approx(float(in_dream(params[None], 0)[0]))
    assert (run_dir / "evaluate" / "episode.mp4").stat().st_size > 1000
    # the rank check: each kept mean's real score is its own episodes on the rank seeds,
    # its dream score its return in the evaluation's dreams, then the blind policies
    rank, rank_seeds = saved["rank"], episode_seeds(config.seed, 1, 2)
    names = [c["name"] for c in rank["controllers"]]
    assert names == ["CMA-ES mean, generation 1", "CMA-ES mean, generation 2", "noop policy",
                     "random policy"]  # fmt: skip
    stacked = np.stack([p for _, p in means])
    for row, (_, p), d in zip(rank["controllers"], means, in_dream(stacked, 1), strict=False):
        assert row["real"] == pytest.approx(np.mean([agent.play(p, s)["return"]
                                                     for s in rank_seeds]))  # fmt: skip
        assert row["dream"] == pytest.approx(float(d))
    dreams, reals = ([c[k] for c in rank["controllers"]] for k in ("dream", "real"))
    assert rank["spearman"] == pytest.approx(spearman(dreams, reals))
    assert "Spearman rho" in "\n".join(evaluate_summary(run_dir))


def test_spearman_against_its_textbook_formulas():
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)), d the rank differences
    x, y = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6], [10.0, 2.0, 3.0, 1.0, 20.0, 5.0]
    rx, ry = [4, 1, 5, 2, 6, 3], [5, 2, 3, 1, 6, 4]
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True))
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (6 * 35))
    assert spearman(x, x) == pytest.approx(1.0)
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    # ties share their mean rank: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4); Pearson
    # of those by hand: covariance 1.125 / sqrt(variances 1.125 * 1.25) = 0.9486833
    assert spearman([1, 5, 5, 7], [0, 1, 2, 3]) == pytest.approx(0.9486833, abs=1e-6)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_controller_of_another_game_is_refused(trained_run, tmp_path):
    run_dir, _ = trained_run
    other = tmp_path / "other"
    (other / "controller").mkdir(parents=True)
    (other / "rollouts").mkdir()
    (other / "rollouts" / "meta.json").write_text(json.dumps({"game": "carracing"}))
    controller = Controller(4 + 2 * 16, 1, False, "tanh")
    ckpt = {"params": torch.zeros(controller.n_params), "controller": controller.spec,
            "game": "doom_takecover", "best": {}}  # fmt: skip
    torch.save(ckpt, other / "controller" / "best.pt")
    with pytest.raises(
        ValueError, match="controller for 'doom_takecover', this run plays 'carracing'"
    ):
        load_controller(other)


def test_real_game_is_played_with_the_runs_game_settings(trained_run, tmp_path):
    # Episodes collected with collect.env = {"skill": 5} must be evaluated at skill 5 too.
    run_dir, _ = trained_run
    other = tmp_path / "skill5"
    for stage in ("vae", "mdnrnn"):
        shutil.copytree(run_dir / stage, other / stage)
    (other / "rollouts").mkdir()
    meta = {"game": "doom_takecover", "env": {"skill": 5}}
    (other / "rollouts" / "meta.json").write_text(json.dumps(meta))
    assert Agent.from_run_dir(other).env.unwrapped.game.get_doom_skill() == 5
    assert Agent.from_run_dir(run_dir).env.unwrapped.game.get_doom_skill() == 4  # meta without env
    # and so are the calibration's real episodes: skill 5 kills the no-op policy sooner
    dream = Dream.from_run_dir(run_dir, max_steps=20)
    skill4, skill5 = (calibrate(dream, "doom_takecover", 3, env=env)["noop"]["real_length_mean"]
                      for env in ({}, {"skill": 5}))  # fmt: skip
    assert skill5 < skill4
