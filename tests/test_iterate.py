"""Iterative training (the iterate stage): rounds of the controller's exploring episodes,
M and C trained again, the evaluation playing the last round's agent."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from commands import SMOKE, cli

from worldmodels.agent import Agent
from worldmodels.artifacts import agent_dir, load_latents
from worldmodels.dream import Dream
from worldmodels.rollouts import episode_paths
from worldmodels.stages import NAMES
from worldmodels.stages.controller import dream_fitness, load_controller
from worldmodels.stages.evaluate import EvaluateConfig

ROUNDS = ["iterate.rounds=2", "iterate.episodes=3", "iterate.explore=0.2", "iterate.hold=5"]


@pytest.fixture(scope="module")
def iterated(smoke_run, tmp_path_factory):
    """A copy of the smoke run, given one round of iterative training, evaluated, then a
    second round (raising ``iterate.rounds`` goes on from the rounds made), evaluated."""
    run_dir, _ = smoke_run
    copy = tmp_path_factory.mktemp("iterated") / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    one = cli("run", SMOKE, f"run_dir={copy}", *ROUNDS, "iterate.rounds=1")
    assert one.returncode == 0, one.stderr[-3000:]
    lines = one.stdout.splitlines()
    assert any(line.startswith("iterate: ") and "iterate.rounds (0 -> 1)" in line
               and line.endswith("going on from where it stopped") for line in lines)  # fmt: skip
    assert any(line.startswith("evaluate: ") and "iterate.rounds (0 -> 1)" in line
               and line.endswith("made again") for line in lines)  # fmt: skip
    round_one = {p: p.read_bytes() for p in (copy / "rounds" / "1").rglob("*") if p.is_file()}
    two = cli("run", SMOKE, f"run_dir={copy}", *ROUNDS)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "round 1 of 2" not in two.stdout and "round 2 of 2" in two.stdout
    assert round_one == {p: p.read_bytes() for p in round_one}  # round 1 untouched
    # fewer rounds is a change of settings, refused
    fewer = cli("iterate", SMOKE, f"run_dir={copy}", *ROUNDS, "iterate.rounds=1")
    assert fewer.returncode == 2 and "iterate.rounds (2 -> 1)" in fewer.stderr
    return copy


def test_each_round_plays_the_controller_and_trains_m_and_c_on_everything_so_far(iterated):
    base = [int(p.stem) for p in episode_paths(iterated / "latents")]
    first = max(base) + 1
    for r in (1, 2):
        here = iterated / "rounds" / str(r)
        played = [int(p.stem) for p in episode_paths(here / "played")]
        assert played == list(range(first + 3 * (r - 1), first + 3 * r))
        episodes, z = load_latents(here)  # the run's episodes and rounds 1..r's, through links
        assert sorted(e["index"] for e in episodes) == base + list(range(first, first + 3 * r))
        for e in episodes:
            assert e["mu"].shape == e["logvar"].shape == (len(e["action"]), z)
            assert e["terminated"][-1] or len(e["action"]) == 300  # the smoke cap
        assert (here / "mdnrnn" / "ckpt.pt").exists() and (here / "controller" / "best.pt").exists()
        assert (here / "config.yaml").exists() and (here / "vae").resolve() == iterated / "vae"
    results = json.loads((iterated / "rounds" / "results.json").read_text())
    assert [row["round"] for row in results["rounds"]] == [1, 2]
    assert results["final"] == "rounds/2" and agent_dir(iterated) == iterated / "rounds" / "2"
    report = cli("report", str(iterated))
    assert "## Iterative training" in report.stdout and "rounds/2's" in report.stdout


def test_evaluate_scores_the_last_rounds_agent(iterated):
    final = iterated / "rounds" / "2"
    saved = json.loads((iterated / "evaluate" / "results.json").read_text())
    dream = Dream.from_run_dir(final, temperature=saved["dream"]["temperature"])
    controller, params = load_controller(final)
    seed = EvaluateConfig().seed  # the smoke experiment's
    in_dream = dream_fitness(dream, controller, saved["dream"]["episodes"], seed)
    assert saved["dream"]["mean"] == pytest.approx(float(in_dream(params[None], 0)[0]))
    agent = Agent.from_run_dir(final)
    assert saved["real"]["scores"][0] == agent.play(params, saved["seeds"][0])["return"]


def test_a_rerun_with_the_rounds_skips_everything(iterated):
    again = cli("run", SMOKE, f"run_dir={iterated}", *ROUNDS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done already, skipped") == len(NAMES)


def test_exploring_episode_without_exploration_is_the_controllers_episode(smoke_run):
    run_dir, _ = smoke_run
    agent = Agent.from_run_dir(run_dir)
    _, params = load_controller(run_dir)
    played = agent.play(params, 123)
    recorded = agent.explore(params, 123, chance=0.0, hold=5, policy={})
    assert recorded["return"] == played["return"]
    assert len(recorded["action"]) == played["length"] == len(recorded["mu"])
    explored = agent.explore(params, 123, chance=1.0, hold=5, policy={"max_hold": 1})
    assert not np.array_equal(explored["action"][:5], recorded["action"][:5])
    assert np.abs(explored["action"]).max() <= 1.0
