"""Shipped agents: export to safetensors, play them back with ``evaluate --pretrained``
exactly as the run that trained them, and refuse missing, altered or misshapen files."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from commands import SMOKE, cli
from safetensors.torch import load_file, save_file

from worldmodels.artifacts import load_mdnrnn, load_vae
from worldmodels.pretrained import FILES, MANIFEST, _fingerprint, find, known, unpack
from worldmodels.stages.controller import load_controller
from worldmodels.vae import ConvVAE


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory):
    run_dir, _ = smoke_run
    folder = tmp_path_factory.mktemp("pretrained") / "smoke_agent"
    result = cli("export", str(run_dir), str(folder))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, folder


def test_pretrained_agent_plays_as_the_run_that_trained_it(exported, tmp_path):
    run_dir, folder = exported
    for file in FILES:  # safetensors, readable without torch.load
        assert load_file(str(folder / file))
    trained = json.loads((run_dir / "evaluate" / "results.json").read_text())
    out = tmp_path / "played"
    result = cli("evaluate", "--pretrained", str(folder), f"run_dir={out}",
                 "evaluate.episodes=2", "evaluate.video=false",
                 "evaluate.rank_episodes=1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(a pretrained agent ships without it), so no rank check" in result.stdout
    played = json.loads((out / "evaluate" / "results.json").read_text())
    assert "rank" not in played
    assert played["seeds"] == trained["seeds"][:2]
    assert played["real"]["scores"] == trained["real"]["scores"][:2]
    assert played["random_policy"]["scores"] == trained["random_policy"]["scores"][:2]
    assert played["dream"] == trained["dream"]  # same M, same dream starts, same seed
    assert "| real game (2 episodes) |" in result.stdout
    again = cli("evaluate", "--pretrained", str(folder), f"run_dir={out}",
                "evaluate.episodes=1", "evaluate.video=false")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]  # its own run dir is reused
    assert "| real game (1 episodes) |" in again.stdout


def test_unknown_pretrained_name_lists_the_known_ones():
    result = cli("evaluate", "--pretrained", "no_such_agent")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "unknown pretrained agent 'no_such_agent'; known: " in message
    assert all(name in message for name in known())


def _copy(folder, tmp_path):
    copy = tmp_path / "agent"
    shutil.copytree(folder, copy)
    return copy


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_missing_or_altered_weights_are_refused_naming_the_file(exported, tmp_path, damage):
    copy, out = _copy(exported[1], tmp_path), tmp_path / "out"
    path = copy / "mdnrnn.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[:-10])
    else:
        data[-5] ^= 0xFF  # same size, one byte of a weight changed
        path.write_bytes(data)
    expected = {"missing": "is missing", "truncated": "bytes", "altered": "sha256"}[damage]
    with pytest.raises(ValueError, match=rf"mdnrnn\.safetensors.*{expected}"):
        unpack(copy, out)
    assert not out.exists()  # nothing written


def test_broken_manifest_is_a_one_line_error_naming_it(exported, tmp_path):
    copy = _copy(exported[1], tmp_path)
    (copy / MANIFEST).write_text('{"game": "doom_takecover"}')
    with pytest.raises(ValueError, match=r"agent\.json lacks env, vae, mdnrnn, controller, files"):
        unpack(copy, tmp_path / "out")
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read .*agent\.json"):
        unpack(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_weights_of_another_architecture_name_both_shapes(exported, tmp_path):
    copy = _copy(exported[1], tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    other = ConvVAE(manifest["vae"]["z_size"] + 3)  # honest file, wrong architecture
    save_file(other.state_dict(), str(copy / "vae.safetensors"))
    manifest["files"]["vae.safetensors"] = _fingerprint(copy / "vae.safetensors")
    (copy / MANIFEST).write_text(json.dumps(manifest))
    z = manifest["vae"]["z_size"]
    with pytest.raises(ValueError) as error:
        unpack(copy, tmp_path / "out")
    assert re.search(
        rf"vae\.safetensors: \S+ has shape \[[^]]*\b{z + 3}\b[^]]*\], the "
        rf"architecture in agent.json needs \[[^]]*\b{z}\b",
        str(error.value),
    )


def test_unpack_never_overwrites_a_trained_run(exported):
    run_dir, folder = exported
    before = (run_dir / "vae" / "ckpt.pt").read_bytes()
    with pytest.raises(ValueError, match="not unpacked from a pretrained agent"):
        unpack(folder, run_dir)
    assert (run_dir / "vae" / "ckpt.pt").read_bytes() == before
    assert torch.load(run_dir / "vae" / "ckpt.pt", weights_only=True)["optimizer"] is not None


def test_an_unpacked_agent_is_no_data_to_train_m_on(exported, tmp_path):
    out = tmp_path / "out"
    unpack(exported[1], out)
    before = (out / "mdnrnn" / "ckpt.pt").read_bytes()
    result = cli("mdnrnn", SMOKE, f"run_dir={out}", "--force")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "\n" not in message
    expected = ("latents/000000.npz has no action, reward, terminated: it holds a dream "
                "start only, as in a run directory unpacked from a pretrained agent")  # fmt: skip
    assert expected in message
    assert (out / "mdnrnn" / "ckpt.pt").read_bytes() == before  # the forced M put back


def test_shipped_agents_match_their_manifests(tmp_path):
    assert {"doom_takecover", "carracing"} <= set(known())
    for name in known():
        manifest = unpack(find(name), tmp_path / name)  # sizes, hashes and shapes checked
        assert load_vae(tmp_path / name).z_size == manifest["vae"]["z_size"]
        assert load_mdnrnn(tmp_path / name).hidden_size == manifest["mdnrnn"]["hidden_size"]
        controller, params = load_controller(tmp_path / name)
        assert params.shape == (controller.n_params,)
