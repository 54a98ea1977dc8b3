"""The benchmarks keep working: their smoke runs (seconds, tiny loads) print the full tables."""

from __future__ import annotations

import os
import re
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


@pytest.mark.timeout(240)
def test_soak_smoke_loses_and_leaks_nothing() -> None:
    """bench/soak.py --smoke: 2,000 mixed requests (streams, client aborts, upstream faults, bad
    requests) through a real twistd gateway; every reply is what it must be, every request is
    counted once in the metrics and the access log, and nothing stays open or in flight."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--smoke"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=220,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    for row in ("| replies not as expected | 0 | 0 | yes |", "| sum of llm_requests_total | 2000 | = 2000 | yes |",
                "| access-log lines | 2000 | = 2000 | yes |", "| requests in flight at the end | 0 | 0 | yes |",
                "| client connections still open at the end | 0 | 0 | yes |"):
        assert row in out
    assert re.search(r"\| file descriptors \(pool apart\), after warm-up → end \| (\d+) → (\d+) \| back to baseline \| yes \|", out)
