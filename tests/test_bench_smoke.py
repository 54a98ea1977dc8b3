"""The benchmark keeps working: its smoke run (seconds, tiny loads) prints the full table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_bench_smoke_prints_every_figure() -> None:
    """bench/run.py --smoke runs every phase against nginx, the treq proxy and litegate."""
    if shutil.which("wrk") is None or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.skip("nginx and wrk are not installed (make test installs them as root)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=220,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    for system in ("upstream direct (nginx)", "treq proxy (~40 lines)", "litegate pass-through", "litegate Anthropic-translated"):
        assert f"| {system} |" in out
    for figure in ("idle RSS after start-up", "cold start", "added latency p50 at c=1", "throughput vs treq proxy",
                   "50 concurrent streams: errors | 0 |", "added inter-event delay p99"):
        assert figure in out
    assert "| errors |" in out and "nan" not in out
