"""The package as a stranger gets it: an sdist whose tests collect, a wheel whose CLI finds the
bundled models once installed, metadata with a licence, authors and URLs. Built offline from
a copy of the source tree with the installed setuptools (no build isolation, no network)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "*.egg-info",
                              "build", "dist", "demo-out", "runs")
BUILD = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"


def _build(kind: str, tmp: Path) -> Path:
    """Build an sdist or a wheel ("build_sdist" / "build_wheel") of a copy of the tree."""
    tree = tmp / "tree"
    if not tree.exists():
        shutil.copytree(ROOT, tree, ignore=SKIP, symlinks=True)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-c", BUILD, kind, str(out)], cwd=tree, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("package")


@pytest.mark.slow
def test_sdist_ships_what_the_tests_need_and_they_collect(build_dir: Path) -> None:
    sdist = _build("build_sdist", build_dir)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(build_dir / "unpacked", filter="data")
    for needed in ("LICENSE", "MANIFEST.in", "tests/conftest.py", "tests/planted_model.py",
                   "tests/fixtures/openai_ckpt_basic/final_model.pt", "docs/method.md", "benchmarks/run.py",
                   "src/sparsecircuits/cli/__main__.py", "src/sparsecircuits/bundled/small-sparse/model.safetensors",
                   "src/sparsecircuits/configs/small-sparse.toml", "src/sparsecircuits/model/spmm.c"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("configs/")]
    unpacked = build_dir / "unpacked" / sdist.name[: -len(".tar.gz")]
    env = {**os.environ, "PYTHONPATH": str(unpacked / "src")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=unpacked, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", summary), summary  # "..., N errors" otherwise
    assert int(summary.split()[0]) > 100


@pytest.mark.slow
def test_installed_wheel_finds_its_bundled_models(build_dir: Path) -> None:
    wheel = _build("build_wheel", build_dir)
    with zipfile.ZipFile(wheel) as zf:
        meta = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
    for field in ("License-Expression: MIT", "Author: sparsecircuits authors", "Requires-Python: >=3.10",
                  "Project-URL: Repository, https://github.com/sparsecircuits/sparsecircuits",
                  "Classifier: Programming Language :: Python :: 3.11", "Keywords:"):
        assert field in meta
    site = build_dir / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "sparsecircuits.cli", "model", "info", "bundled:small-sparse"],
                          cwd=build_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"checkpoint  {site / 'sparsecircuits' / 'bundled' / 'small-sparse'}" in proc.stdout
    check = "from sparsecircuits.model import native; lib = native.kernels(); print(lib is not None, native.build_error())"
    proc = subprocess.run([sys.executable, "-c", check], cwd=build_dir, capture_output=True, text=True, timeout=300,
                          env={**env, "SPARSECIRCUITS_CACHE": str(build_dir / "cache")})
    assert proc.stdout.split()[0] == "True", proc.stdout + proc.stderr  # the kernels build from the shipped source
