"""The real `twistd litegate` process: plugin discovery, --check-config, start-up errors, serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("VKEY_")}
    base["PYTHONPATH"] = str(ROOT)
    base.update(extra)
    return base


def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "litegate", *args],
        cwd=ROOT, env=env(**extra), capture_output=True, text=True, timeout=30,
    )


def test_check_config_accepts_the_example() -> None:
    """--check-config on the example exits 0 without binding, warning about keyless providers."""
    result = run("--config", "config.example.yaml", "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "litegate: config.example.yaml is valid\n"
    assert "provider 'openai' is disabled" in result.stderr


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    """A bad config fails fast with exit 2 and one line naming file, line and key, no secret."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers:\n  echo: { type: echo }\nmodels:\n  demo: { provider: echo }\n"
        "api_keys:\n  - { key: \"${SECRET_VKEY}\", app: a, allowed_models: [\"*\"] }\n"
    )
    started = time.monotonic()
    result = run("--config", str(bad), SECRET_VKEY="short-secret")
    assert time.monotonic() - started < 1.0  # reliability.md: fails within 1 s
    assert result.returncode == 2
    assert result.stderr == f"litegate: config error: {bad}:6: api_keys[0].key: is shorter than 16 characters\n"
    assert "short-secret" not in result.stdout + result.stderr
    checked = run("--config", str(bad), "--check-config", SECRET_VKEY="short-secret")
    assert checked.returncode == 2


def test_missing_config_option_is_a_usage_error() -> None:
    """Without --config twistd prints usage and fails."""
    result = run()
    assert result.returncode != 0
    assert "--config FILE is required" in result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_pair(avoid: int) -> int:
    """A port B with B and B+1 both free now (worker i listens on B+i), neither `avoid`."""
    while True:
        base = free_port()
        if avoid in (base, base + 1):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


@pytest.mark.timeout(60)
def test_twistd_serves_the_example_config() -> None:
    """`twistd -n litegate` with the example config and no keys serves health and the demo."""
    port = free_port()
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "litegate", "--config", "config.example.yaml", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.read() == b'{"status":"ok"}'
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=b'{"model":"demo","messages":[{"role":"user","content":"ping pong"}]}',
            headers={"Authorization": "Bearer sk-litegate-demo-backend-0001", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert b'"content":"ping pong"' in r.read()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Main loop terminated." in out
    assert "provider 'anthropic' is disabled" in out
    assert "Traceback" not in out


@pytest.mark.timeout(60)
def test_two_workers_share_the_port_and_exit_together() -> None:
    """--workers 2: both processes serve the shared port (SO_REUSEPORT), each also answers on
    its own port for its /metrics, and SIGTERM stops both with exit 0."""
    port = free_port()
    base = free_pair(avoid=port)
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "litegate", "--config", "config.example.yaml", "--listen", f"127.0.0.1:{port}",
         "--workers", "2", "--worker-port-base", str(base)],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        for p in (port, base, base + 1):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2) as r:
                        assert r.status == 200
                    break
                except OSError as e:
                    assert proc.poll() is None, proc.communicate()[0]
                    assert time.monotonic() < deadline, f"port {p}: {e!r}"
                    time.sleep(0.1)
        for p in (base, base + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2) as r:
                assert b"llm_requests_in_flight" in r.read()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "worker 1 exited" in out


def test_a_burst_of_connections_is_queued_not_dropped() -> None:
    """While the gateway is busy (here: stopped) the kernel queues 400 new connections for it:
    the listen backlog is not Twisted's default 50, past which SYNs are dropped and clients
    only retry after 1, 3, 7 s (1,000 streams opening at once took 8 s to start)."""
    import select
    import signal

    port = free_port()
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "litegate", "--config", "config.example.yaml", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGSTOP)
        for _ in range(400):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        pending, connected, until = set(socks), 0, time.monotonic() + 1.5
        while pending and time.monotonic() < until:
            _, writable, _ = select.select([], list(pending), [], 0.1)
            for s in writable:
                pending.discard(s)
                connected += s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert connected == 400
    finally:
        proc.send_signal(signal.SIGCONT)
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
