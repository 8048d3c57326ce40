"""``mdn`` on its own: installed alone (torch its only dependency) into a fresh virtual
environment, its tests pass there and the pipeline is not importable."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_mdn_installs_alone_and_its_tests_pass(tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = str(env / "bin" / "python")
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # the build this suite runs on
    pytest_pin = f"pytest=={pytest.__version__}"
    install = run(python, "-m", "pip", "install", "-q", torch_pin, pytest_pin, str(ROOT / "mdn"),
                  cwd=tmp_path)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    listed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    for other in ("gymnasium", "vizdoom", "cma", "opencv", "worldmodels"):
        assert other not in listed, f"{other} was installed with mdn"
    # run from outside the clone, so the installed mdn is what the tests import
    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "mdn" / "tests"),
                cwd=tmp_path)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and " failed" not in tests.stdout
    where = run(python, "-c", "import mdn; print(mdn.__file__)", cwd=tmp_path).stdout
    assert str(env) in where  # the installed copy, not the clone's folder
    assert sys.executable != python
