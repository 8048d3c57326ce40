"""The command line: the smoke experiment end to end, skipping, config errors, kill -9."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from commands import ROOT, SMOKE, cli

from worldmodels.__main__ import experiment_config, main
from worldmodels.artifacts import read_results
from worldmodels.config import load_config
from worldmodels.rollouts import episode_path, read_episode
from worldmodels.stages import NAMES


def test_smoke_experiment_runs_every_stage(smoke_run):
    run_dir, result = smoke_run
    status = json.loads((run_dir / "stages.json").read_text())
    assert all(status[s]["done"] for s in NAMES) and set(status) == set(NAMES)
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert {"real", "random_policy", "dream", "seeds"} <= set(results)
    assert (run_dir / "config.yaml").exists() and (run_dir / "report.md").exists()
    report = (run_dir / "report.md").read_text()
    ratio = results["real"]["mean"] / results["random_policy"]["mean"]
    assert f"{ratio:.2f}x the random policy" in report.splitlines()[2]  # the verdict, on top
    assert "| noop |" in report and "| random |" in report  # the calibration table
    assert "Verdict:" in result.stdout and "| calibrate | done |" in result.stdout
    assert "| real game (3 episodes) |" in result.stdout
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert "vae/train/loss" in metrics and "mdnrnn/val/z_nll_per_dim" in metrics


@pytest.mark.ray
def test_smoke_experiment_runs_unchanged_on_ray_with_the_same_results(
    smoke_run, ray_cluster, tmp_path
):
    local, _ = smoke_run  # joins the running cluster, as on a real one
    address = f"runtime.ray_address={ray_cluster.address}"
    result = cli("run", SMOKE, f"run_dir={tmp_path}", "runtime.backend=ray", address)
    assert result.returncode == 0, result.stderr[-3000:]
    for i in range(6):  # the same episodes, bit for bit
        ours, theirs = (read_episode(episode_path(d / "rollouts", i)) for d in (tmp_path, local))
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"episode {i} {key}")
    for output in ("calibration", "evaluate"):  # and the same real-game scores
        ours, theirs = (read_results(d, output) for d in (tmp_path, local))
        assert ours == theirs, output


def test_rerun_skips_and_changed_settings_are_refused(smoke_run):
    run_dir, _ = smoke_run
    # as recorded before collect.policy existed: a setting added since, at its default, is
    # what was done before it, so nothing counts as changed
    path = run_dir / "stages.json"
    status = json.loads(path.read_text())
    for entry in status.values():
        del entry["settings"]["collect"]["policy"]
    path.write_text(json.dumps(status))
    again = cli("run", SMOKE, f"run_dir={run_dir}")
    assert again.returncode == 0
    assert again.stdout.count("done already, skipped") == len(NAMES)
    changed = cli("vae", SMOKE, f"run_dir={run_dir}", "vae.max_steps=21")
    assert changed.returncode == 2
    assert "stage vae: its outputs" in changed.stderr
    assert "vae.max_steps (20 -> 21)" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1
    changed = cli("vae", SMOKE, f"run_dir={run_dir}", "collect.policy.max_hold=20")
    assert changed.returncode == 2 and "collect.policy.max_hold (None -> 20)" in changed.stderr
    report = cli("report", str(run_dir))
    assert report.returncode == 0 and "| evaluate | done |" in report.stdout


def test_run_dir_of_the_earlier_layout_is_recognised(smoke_run, tmp_path):
    """Before calibration was a stage, M's stage ran it (``mdnrnn.calibration_episodes``)
    into mdnrnn/calibration.json: such a run directory is taken as it is, nothing redone."""
    run_dir, _ = smoke_run
    old = tmp_path / "old"
    subprocess.run(["cp", "-r", str(run_dir), str(old)], check=True)
    status = json.loads((old / "stages.json").read_text())
    del status["calibrate"]
    for entry in status.values():
        entry["settings"].pop("calibrate", None)
        if "mdnrnn" in entry["settings"]:
            entry["settings"]["mdnrnn"].update(calibration_episodes=3, calibration_temperature=1.15)
    (old / "stages.json").write_text(json.dumps(status))
    (old / "calibration" / "results.json").rename(old / "mdnrnn" / "calibration.json")
    (old / "calibration").rmdir()
    again = cli("run", SMOKE, f"run_dir={old}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done already, skipped") == len(NAMES) - 1
    assert "calibrate: found in the run directory's earlier layout, adopted" in again.stdout
    assert (old / "calibration" / "results.json").read_text() == (
        run_dir / "calibration" / "results.json").read_text()  # fmt: skip


def test_changed_calibration_reruns_only_calibration(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    before = (copy / "evaluate" / "results.json").read_text()
    refused = cli("calibrate", SMOKE, f"run_dir={copy}", "calibrate.episodes=2")
    assert refused.returncode == 2 and "calibrate.episodes (3 -> 2)" in refused.stderr
    result = cli("calibrate", SMOKE, f"run_dir={copy}", "calibrate.episodes=2", "--force")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((copy / "calibration" / "results.json").read_text())["episodes"] == 2
    again = cli("run", SMOKE, f"run_dir={copy}", "calibrate.episodes=2")
    assert again.returncode == 0 and again.stdout.count("done already, skipped") == len(NAMES)
    assert (copy / "evaluate" / "results.json").read_text() == before


def test_more_generations_go_on_from_the_last_and_remake_what_reads_them(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    before = json.loads((copy / "controller" / "es_state.json").read_text())
    more = cli("run", SMOKE, f"run_dir={copy}", "controller.generations=3")
    assert more.returncode == 0, more.stderr[-2000:]
    after = json.loads((copy / "controller" / "es_state.json").read_text())
    assert after["fitness"][:2] == before["fitness"] and len(after["fitness"]) == 3
    assert "controller: generation 1/3" not in more.stdout  # not started over
    assert "controller: generation 3/3" in more.stdout
    for stage in ("iterate", "evaluate"):  # they read the controller: made again
        assert f"{stage}: controller.generations (2 -> 3): made again" in more.stdout
    fewer = cli("controller", SMOKE, f"run_dir={copy}", "controller.generations=2")
    assert fewer.returncode == 2 and "controller.generations (3 -> 2)" in fewer.stderr


def test_forced_stage_whose_input_is_broken_loses_nothing(smoke_run, tmp_path, capsys):
    run_dir, _ = smoke_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    ckpt = copy / "vae" / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    latents = {p.name: p.read_bytes() for p in (copy / "latents").iterdir()}
    status = json.loads((copy / "stages.json").read_text())
    assert main(["encode", SMOKE, f"run_dir={copy}", "--force"]) == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and str(ckpt) in err
    assert {p.name: p.read_bytes() for p in (copy / "latents").iterdir()} == latents
    assert json.loads((copy / "stages.json").read_text()) == status
    assert not list(copy.glob("*.replaced"))


@pytest.mark.parametrize(("setting", "message"), [
    ("vae.z_size=-3", "setting 'vae.z_size' must be >= 1, got -3"),
    ("controller.popsize=1", "setting 'controller.popsize' must be >= 2, got 1"),
    ("mdnrnn.precision=fp8", "setting 'mdnrnn.precision' must be one of ['auto', 'float32', "
                             "'bfloat16'], got 'fp8'"),
    ("vae.lr=0", "setting 'vae.lr' must be > 0, got 0.0"),
    ("mdnrnn.dropout=1", "setting 'mdnrnn.dropout' must be >= 0 and < 1, got 1.0"),
    ("mdnrnn.dropout=-0.1", "setting 'mdnrnn.dropout' must be >= 0 and < 1, got -0.1"),
    ("iterate.explore=1.5", "setting 'iterate.explore' must be >= 0 and <= 1, got 1.5"),
    ("controller.repeat=0", "setting 'controller.repeat' must be >= 1, got 0"),
    ("controller.max_pedal=1.5", "setting 'controller.max_pedal' must be > 0 and <= 1, got 1.5"),
    ("controller.max_pedal=0.5", "setting 'controller.max_pedal' is for CarRacing's pedals; "
                                 "'doom_takecover' has none, got 0.5"),
    ("runtime.backend=mpi", "setting 'runtime.backend' must be one of ['local', 'ray'], "
                            "got 'mpi'"),
])  # fmt: skip
def test_out_of_range_settings_are_refused_before_anything_runs(tmp_path, capsys, setting,
                                                                message):  # fmt: skip
    run_dir = tmp_path / "run"
    assert main(["run", SMOKE, f"run_dir={run_dir}", setting]) == 2
    assert capsys.readouterr().err.strip() == f"worldmodels: error: {message}"
    assert not run_dir.exists()


def test_help_lists_every_setting_and_config_prints_the_resolved_one():
    helped = cli("--help")
    assert helped.returncode == 0
    for stage in NAMES:
        assert f"  {stage} " in helped.stdout
    assert "vae.lr = 0.0001  [> 0]" in helped.stdout
    assert "calibrate.episodes = 100  [>= 0]" in helped.stdout
    assert "Real episodes, and dreams, per policy" in helped.stdout  # the field's docstring
    config = cli("config", SMOKE, "vae.lr=0.5")
    assert config.returncode == 0
    resolved = yaml.safe_load(config.stdout)
    assert resolved["name"] == "smoke" and resolved["vae"]["lr"] == 0.5
    assert resolved["calibrate"]["episodes"] == 3  # from the experiment file


def test_another_experiments_run_dir_is_refused(smoke_run, capsys):
    run_dir, _ = smoke_run
    assert main(["collect", SMOKE, f"run_dir={run_dir}", "name=other"]) == 2
    assert "holds the experiment 'smoke', not 'other'" in capsys.readouterr().err
    # a run of one game given to an experiment of another: both games named, by any stage
    before = (run_dir / "config.yaml").read_text()
    for stage in ("mdnrnn", "evaluate"):
        assert main([stage, SMOKE, f"run_dir={run_dir}", "collect.game=carracing"]) == 2
        assert ("holds episodes of 'doom_takecover', this experiment plays 'carracing'"
                in capsys.readouterr().err)  # fmt: skip
    assert (run_dir / "config.yaml").read_text() == before


def test_config_errors_name_the_key(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown setting 'vae.zsize'"):
        load_config(None, ["vae.zsize=3"])
    with pytest.raises(ValueError, match=r"'vae.z_size' must be int, got 'big'"):
        load_config(None, ["vae.z_size=big"])
    with pytest.raises(ValueError, match=r"'vae.max_steps' must be int or NoneType, got 1.5"):
        load_config(None, ["vae.max_steps=1.5"])
    assert load_config(None, ["vae.lr=1", "vae.max_steps=null"]).vae.lr == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    assert main(["run", str(bad)]) == 2
    assert "must hold a mapping of settings, got list" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dance"])  # unknown stage: argparse lists the choices


def test_stages_and_run_share_the_default_experiment():
    assert experiment_config([]).name == experiment_config(["vae.epochs=2"]).name == "doom_laptop"
    assert experiment_config([SMOKE, "vae.epochs=2"]).vae.epochs == 2


@contextlib.contextmanager
def read_only(directory: Path):
    """No new files in ``directory``: chmod for a user, the immutable flag for root."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_read_only_run_dir_is_a_one_line_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["collect", SMOKE, f"run_dir={run_dir}"]) == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    with read_only(run_dir):
        assert main(["vae", SMOKE, f"run_dir={run_dir}"]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert len(errors) == 1 and errors[0].startswith("worldmodels: error: ")
    assert "not permitted" in errors[0] or "Permission denied" in errors[0]
    assert str(run_dir) in errors[0]
    for path, data in before.items():  # nothing already written is lost or changed
        if path.name != "metrics.jsonl":
            assert path.read_bytes() == data, path


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    run_dir, settings = tmp_path / "run", ["vae.max_steps=30", "vae.checkpoint_every=10"]
    assert main(["collect", SMOKE, f"run_dir={run_dir}"]) == 0
    real_fsync, calls = os.fsync, []
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to tell which file is being written")

    def fsync_until_full(fd):  # the disk fills up while the second checkpoint is written
        calls.append("ckpt.pt" in os.readlink(f"/proc/self/fd/{fd}"))
        if sum(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    capsys.readouterr()
    assert main(["vae", SMOKE, f"run_dir={run_dir}", *settings]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if "error" in x]  # not tqdm's bar
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert str(run_dir / "vae" / "ckpt.pt") in errors[0]  # names the file
    ckpt = torch.load(run_dir / "vae" / "ckpt.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 10  # the first checkpoint survived whole
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]  # no half-written files
    assert json.loads((run_dir / "stages.json").read_text())["collect"]["done"]
    monkeypatch.setattr(os, "fsync", real_fsync)  # space again: the stage resumes and ends
    assert main(["vae", SMOKE, f"run_dir={run_dir}", *settings]) == 0
    assert torch.load(run_dir / "vae" / "ckpt.pt", weights_only=True)["progress"]["step"] == 30


def test_killed_run_resumes_to_the_same_artifacts(tmp_path):
    settings = ["vae.max_steps=30", "vae.checkpoint_every=10"]  # one epoch is 38 steps
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli("collect", SMOKE, f"run_dir={whole}").returncode == 0
    shutil.copytree(whole, killed)  # the same episodes: collect is deterministic (tested)
    assert cli("vae", SMOKE, f"run_dir={whole}", *settings).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldmodels", "vae", SMOKE, f"run_dir={killed}", *settings],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ckpt, deadline = killed / "vae" / "ckpt.pt", time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint to kill at"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not json.loads((killed / "stages.json").read_text())["vae"]["done"]
    assert cli("vae", SMOKE, f"run_dir={killed}", *settings).returncode == 0
    a = torch.load(whole / "vae" / "ckpt.pt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 30
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)


def test_wandb_offline_logs_the_metrics(smoke_run, tmp_path):
    pytest.importorskip("wandb")
    run_dir, _ = smoke_run
    copy = tmp_path / "smoke"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    result = cli("run", SMOKE, f"run_dir={copy}", "logging.wandb=true",
                 env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    files = list((copy / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()
    assert b"vae/train/loss" in data and b"mdnrnn/val/z_nll_per_dim" in data
    assert b"evaluate/results/real/mean" in data  # each stage's results.json, flattened
    # WANDB_DIR, when set, is where wandb writes, not the run directory
    elsewhere = tmp_path / "wandb_dir"
    elsewhere.mkdir()
    again = cli("run", SMOKE, f"run_dir={copy}", "logging.wandb=true",
                env={"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                     "WANDB_DIR": str(elsewhere)})  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(elsewhere.rglob("offline-run-*/run-*.wandb"))) == 1
    assert len(list((copy / "wandb").glob("offline-run-*/run-*.wandb"))) == 1  # no new one
