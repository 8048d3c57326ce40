"""``mdn`` on its own: installed alone (torch its only dependency) into a fresh virtual
environment, its tests pass there and the pipeline is not importable."""

from __future__ import annotations

import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)


def link_installed(names: list[str], site: Path) -> None:
    """Make this interpreter's installed ``names`` and what they need (their unconditional
    requirements, recursively) installed in ``site`` too, by links: the same packages as a
    ``pip install`` of them from this machine's wheels, without unpacking a GB of torch."""
    seen, todo = set(), list(names)
    while todo:
        dist = metadata.distribution(todo.pop())
        if dist.name.lower() in seen:
            continue
        seen.add(dist.name.lower())
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for top in {f.parts[0] for f in dist.files} - {"..", "__pycache__"}:
            if not (site / top).exists():  # the environment's own pip and setuptools stay
                (site / top).symlink_to(dist.locate_file(top))


@pytest.mark.slow
def test_mdn_installs_alone_and_its_tests_pass(tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = str(env / "bin" / "python")
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp_path).stdout.strip())  # fmt: skip
    link_installed(["torch", "pytest"], site)
    install = run(python, "-m", "pip", "install", "-q", str(ROOT / "mdn"), cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    assert "torch==" in listed and "mdn==" in listed
    for other in ("gymnasium", "vizdoom", "cma", "opencv", "worldmodels"):
        assert other not in listed, f"{other} was installed with mdn"
    # run from outside the clone, so the installed mdn is what the tests import
    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "mdn" / "tests"),
                cwd=tmp_path)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and " failed" not in tests.stdout
    where = run(python, "-c", "import mdn; print(mdn.__file__)", cwd=tmp_path).stdout
    assert str(env) in where  # the installed copy, not the clone's folder
    missing = run(python, "-c", "import worldmodels", cwd=tmp_path)
    assert "No module named 'worldmodels'" in missing.stderr
    assert sys.executable != python
