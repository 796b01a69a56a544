"""The Home Assistant integration (custom_components/edged) in Home Assistant's own test
harness: tests/ha, run in .venv-ha, the virtual environment scripts/setup --test makes
where Python is 3.13 or newer (Home Assistant needs it: the Debian 13 passes of CI).

Those tests start their own broker and `edged run` (from .venv) inside this session's
network namespace, which the harness's process inherits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HA_PYTEST = ROOT / ".venv-ha" / "bin" / "pytest"

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not HA_PYTEST.exists(),
        reason="Home Assistant needs Python 3.13: scripts/setup --test makes .venv-ha there "
        "(CI's Debian 13 passes run these tests)",
    ),
    pytest.mark.timeout(900),
]


def test_the_integration_in_home_assistants_own_harness() -> None:
    env = {**os.environ, "EDGED_BIN": str(Path(sys.executable).parent / "edged")}
    run = subprocess.run(
        [str(HA_PYTEST), "-c", "tests/ha/pytest.ini", "tests/ha", "-rfEs", "-p", "no:sugar"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
    )
    sys.stdout.write(run.stdout[-20000:])  # pytest shows it when the test failed
    sys.stderr.write(run.stderr[-5000:])
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "no output"
    assert run.returncode == 0, f"Home Assistant's harness: {summary}"
    assert " passed" in summary and "skipped" not in summary, summary


def test_the_integration_type_checks_against_home_assistant() -> None:
    mypy = HA_PYTEST.parent / "mypy"
    run = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", "custom_components/edged"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
