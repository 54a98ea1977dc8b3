"""The real `twistd litegate` process under SIGTERM (drain) and SIGHUP (reload)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from tests.fakes.openai import API_KEY as OPENAI_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply, sse_data

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")
KEY = "sk-lifecycle-test-key-0001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(upstream: str, extra_models: str = "", drain: float = 10) -> str:
    return f"""
providers:
  openai: {{ api_key: "{OPENAI_KEY}", base_url: "{upstream}" }}
models:
  "gpt-4o": {{ provider: openai, model: gpt-4o }}
{extra_models}
api_keys:
  - {{ key: "{KEY}", app: "life", allowed_models: ["*"] }}
timeouts: {{ shutdown_delay: 0.5, drain: {drain} }}
"""


class Gateway:
    def __init__(self, tmp: Path, upstream: str, **kwargs: Any) -> None:
        self.config = tmp / "config.yaml"
        self.config.write_text(config_text(upstream, **kwargs))
        self.port = free_port()
        self.log = tmp / "twistd.log"
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "litegate", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"],
            cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def output(self) -> str:
        return self.log.read_text()


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def wait_healthy(http: Any, gw: Gateway) -> None:
    for _ in range(200):
        try:
            response = await http.get(gw.url + "/health")
            await response.content()
            if response.code == 200:
                return
        except Exception:
            pass
        assert gw.proc.poll() is None, gw.output()
        await sleep(0.05)
    pytest.fail("the gateway did not become healthy: " + gw.output())


async def wait_exit(gw: Gateway, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    while gw.proc.poll() is None:
        assert time.monotonic() - started < timeout, "twistd did not exit in time"
        await sleep(0.05)
    return gw.proc.returncode, time.monotonic() - started


def stream_events(n: int) -> list[bytes]:
    chunks = [
        sse_data({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]})
        for i in range(n)
    ]
    usage = sse_data({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}})
    return [*chunks, usage, b"data: [DONE]\n\n"]


async def stream(http: Any, gw: Gateway, model: str = "gpt-4o") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await http.post(gw.url + "/v1/chat/completions", json.dumps(body).encode(), headers={"Authorization": f"Bearer {KEY}"})
    return await response.content()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gw in started:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_sigterm_drains_in_flight_streams(fake_openai: FakeOpenAI, http: Any, tmp_path: Path, running: list[Gateway]) -> None:
    """SIGTERM: /health turns 503 at once, new connections are refused after the short delay,
    all 50 in-flight streams finish complete, and twistd exits 0."""
    gw = Gateway(tmp_path, fake_openai.base_url)
    running.append(gw)
    await wait_healthy(http, gw)
    for _ in range(50):
        fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(20), delay=0.05))
    streams = [defer.ensureDeferred(stream(http, gw)) for _ in range(50)]
    while len(fake_openai.requests) < 50:
        await sleep(0.02)
    gw.signal(signal.SIGTERM)
    await sleep(0.1)
    response = await http.get(gw.url + "/health")
    assert response.code == 503
    assert json.loads(await response.content()) == {"status": "shutting_down"}
    await sleep(0.6)  # past shutdown_delay: the listener is closed, the streams still run
    assert gw.proc.poll() is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
    bodies = await defer.gatherResults(streams)
    assert all(b.endswith(b"data: [DONE]\n\n") and b.count(b'"content"') == 20 for b in bodies)
    code, _ = await wait_exit(gw, 15)
    assert code == 0
    assert "stop signal: draining" in gw.output()


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_drain_deadline_ends_streams_with_shutting_down(fake_openai: FakeOpenAI, http: Any, tmp_path: Path, running: list[Gateway]) -> None:
    """A stream still running at the drain deadline ends with a server_shutting_down error
    event (no [DONE]); the process exits 0 right after."""
    gw = Gateway(tmp_path, fake_openai.base_url, drain=1)
    running.append(gw)
    await wait_healthy(http, gw)
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(100), delay=0.1))
    pending = defer.ensureDeferred(stream(http, gw))
    while not fake_openai.requests:
        await sleep(0.02)
    await sleep(0.2)
    gw.signal(signal.SIGTERM)
    body = await pending
    last = body.decode().strip().splitlines()[-1]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "server_shutting_down"
    assert b"[DONE]" not in body
    code, took = await wait_exit(gw, 10)
    assert code == 0
    assert took < 3


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_second_signal_exits_at_once(fake_openai: FakeOpenAI, http: Any, tmp_path: Path, running: list[Gateway]) -> None:
    """A second SIGTERM (or SIGINT) during the drain exits immediately."""
    gw = Gateway(tmp_path, fake_openai.base_url, drain=20)
    running.append(gw)
    await wait_healthy(http, gw)
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(300), delay=0.1))
    pending = defer.ensureDeferred(stream(http, gw))
    while not fake_openai.requests:
        await sleep(0.02)
    gw.signal(signal.SIGTERM)
    await sleep(0.3)
    assert gw.proc.poll() is None
    gw.signal(signal.SIGINT)
    code, took = await wait_exit(gw, 5)
    assert took < 1
    assert code == 1
    pending.addErrback(lambda _: None)
    await pending


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_sighup_reloads_atomically(fake_openai: FakeOpenAI, http: Any, tmp_path: Path, running: list[Gateway]) -> None:
    """SIGHUP applies a valid new config (new aliases work, removed ones 404) while a stream
    started before it finishes on the old config; an invalid file is refused with one log line
    and the old config keeps serving."""
    slow = '  "slow": { provider: openai, model: gpt-4o }\n'
    gw = Gateway(tmp_path, fake_openai.base_url, extra_models=slow)
    running.append(gw)
    await wait_healthy(http, gw)
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(20), delay=0.1))
    in_flight = defer.ensureDeferred(stream(http, gw, "slow"))
    while not fake_openai.requests:
        await sleep(0.02)
    gw.config.write_text(config_text(fake_openai.base_url, extra_models='  "fresh": { provider: openai, model: gpt-4o-mini }\n'))
    gw.signal(signal.SIGHUP)
    for _ in range(100):
        if "reloaded" in gw.output():
            break
        await sleep(0.05)
    body = {"model": "fresh", "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post(gw.url + "/v1/chat/completions", json.dumps(body).encode(), headers={"Authorization": f"Bearer {KEY}"})
    assert response.code == 200, await response.content()
    assert json.loads(await response.content())["model"] == "gpt-4o-mini-2024-08-06"
    body["model"] = "slow"
    response = await http.post(gw.url + "/v1/chat/completions", json.dumps(body).encode(), headers={"Authorization": f"Bearer {KEY}"})
    await response.content()
    assert response.code == 404
    finished = await in_flight
    assert finished.endswith(b"data: [DONE]\n\n") and finished.count(b'"content"') == 20

    gw.config.write_text("providers: {openai: {api_key: x, bogus_key: 1}}\n")
    gw.signal(signal.SIGHUP)
    for _ in range(100):
        if "reload failed" in gw.output():
            break
        await sleep(0.05)
    failures = [line for line in gw.output().splitlines() if "reload failed" in line]
    assert len(failures) == 1
    assert "providers.openai.bogus_key: unknown key" in failures[0]
    body["model"] = "fresh"
    response = await http.post(gw.url + "/v1/chat/completions", json.dumps(body).encode(), headers={"Authorization": f"Bearer {KEY}"})
    await response.content()
    assert response.code == 200
    gw.signal(signal.SIGTERM)
    assert (await wait_exit(gw, 10))[0] == 0
