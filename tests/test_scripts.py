"""Every analysis and benchmark script answers ``--help`` without doing any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.relative_to(ROOT).as_posix()
    for folder in ("analyses", "benchmarks")
    for p in (ROOT / folder).glob("*.py")
)
# s per script: importing eegsal (and torch) takes 2-4 s, up to 16 s measured on
# two busy cores; a script that starts working also writes in the cwd, caught below
TIMEOUT = 30.0


def _help(script: str, cwd: Path) -> dict:
    """Run ``python SCRIPT --help`` in an empty folder; what it printed and left."""
    cwd.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(ROOT / script), "--help"],
                              cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)  # fmt: skip
    except subprocess.TimeoutExpired:
        return dict(timed_out=True, left=sorted(p.name for p in cwd.iterdir()))
    return dict(
        timed_out=False,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        seconds=time.perf_counter() - start,
        left=sorted(p.name for p in cwd.iterdir()),
    )


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[str, dict]:
    """``--help`` of every script, two at a time (each is mostly import time)."""
    base = tmp_path_factory.mktemp("scripts")
    with ThreadPoolExecutor(2) as pool:
        futures = {
            s: pool.submit(_help, s, base / s.replace("/", "-")) for s in SCRIPTS
        }
    return {s: f.result() for s, f in futures.items()}


def test_scripts_are_found():
    assert len(SCRIPTS) >= 15 and "analyses/attribution_localization.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_does_nothing(script, helps):
    res = helps[script]
    assert not res["timed_out"], f"{script} --help ran over {TIMEOUT} s"
    assert res["returncode"] == 0, res["stderr"][-2000:]
    assert res["stdout"].startswith("usage:"), res["stdout"][:500]
    assert Path(script).name in res["stdout"].splitlines()[0]
    assert res["left"] == [], f"{script} --help wrote {res['left']} in the cwd"
