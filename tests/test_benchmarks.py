"""Every script in benchmarks/ starts: a renamed library function cannot leave one dead unnoticed.

Each Python script runs with ``--help`` in its own interpreter (its imports, its argument parser);
each shell script is parsed with ``bash -n``. Nothing is measured.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.py")), ids=lambda path: path.name)
def test_python_script_prints_its_usage(script: Path):
    result = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.match(rf"usage: {re.escape(script.name)}\b", result.stdout), result.stdout[:500]


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.sh")), ids=lambda path: path.name)
def test_shell_script_parses(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
