"""Behaviour under faults, limits and bad input (reliability.md), through real sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from gatewaylib.config import parse_config
from tests.conftest import (
    BACKEND_KEY,
    TEST_ENV,
    Gateway,
    gateway_yaml,
    in_thread,
    openai_client,
    start_gateway,
    stop_gateway,
)
from tests.fakes.anthropic import FakeAnthropic, stream_events
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply, sse_data

MESSAGES = [{"role": "user", "content": "Hi there"}]
SHORT = """
timeouts:
  connect: 1
  response_headers: 1
  first_event: 1
  stream_idle: 1
  total: 3
  request_headers: 1
  request_body: 1
  keepalive: 1
limits:
  max_request_bytes: 4096
  max_concurrent_requests: 3
"""


@pytest_twisted.async_yield_fixture
async def short(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> AsyncIterator[Gateway]:
    """A gateway whose timeouts and limits are shortened so tests can meet them."""
    text = gateway_yaml(fake_openai.base_url, fake_anthropic.base_url) + SHORT
    gw = await start_gateway(parse_config(text, "short.yaml", TEST_ENV))
    yield gw
    await stop_gateway(gw)


def raw_request(body: bytes, key: str = BACKEND_KEY, path: str = "/v1/chat/completions", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def connect(gw: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port.getHost().port), timeout=5)


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def wait_for(predicate: Any, timeout: float = 3.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await sleep(0.01)
    return time.monotonic() - started


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": MESSAGES, **fields}).encode()


# --- client disconnect cancels the upstream -------------------------------------------------


def _send_then_leave(gw: Gateway, payload: bytes, read_first: bool, stay: float) -> bytes:
    with connect(gw) as sock:
        sock.sendall(payload)
        got = sock.recv(4096) if read_first else b""
        time.sleep(stay)
    return got


@pytest.mark.parametrize(
    ("phase", "reply", "stream", "read_first"),
    [
        ("non-streaming request in flight", Reply(hang=True), False, False),
        ("waiting for the first token", Reply(200, {"content-type": "text/event-stream"}, events=[b"data: {}\n\n"], first_delay=30), True, False),
        ("mid-stream", Reply(200, {"content-type": "text/event-stream"}, events=[sse_data({"choices": [{"index": 0, "delta": {"content": str(i)}}], "model": "m"}) for i in range(100)], delay=0.1), True, True),
    ],
)
@pytest_twisted.ensureDeferred
async def test_client_disconnect_closes_upstream(gateway: Gateway, fake_openai: FakeOpenAI, phase: str, reply: Reply, stream: bool, read_first: bool) -> None:
    """Whatever the phase, a client that leaves makes the gateway close its upstream socket
    within 500 ms, nothing is retried, and the request is logged once as client_abort."""
    fake_openai.queue(reply)
    leaving = in_thread(_send_then_leave, gateway, raw_request(body(stream=stream)), read_first, 0.3)
    await wait_for(lambda: len(fake_openai.lost) == 1)
    got = await leaving
    left_at = time.monotonic()
    lost = fake_openai.lost[0]
    closed_after = await wait_for(lambda: lost.called, timeout=2.0)
    assert closed_after < 0.5, f"{phase}: upstream still open {closed_after:.3f}s after the client left"
    assert time.monotonic() - left_at < 0.6
    if read_first:
        assert got.startswith(b"HTTP/1.1 200")
    await sleep(0.3)
    assert len(fake_openai.requests) == 1
    aborts = [line for line in gateway.log_lines if line.endswith("outcome=client_abort")]
    assert len(aborts) == 1 and len(gateway.log_lines) == 1


class Backlogged:
    """A listening socket whose accept queue is full: connecting to it hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(filler)

    def strangers_after_draining(self, wait: float) -> int:
        """Accept everything queued or arriving for `wait` seconds; count connections that are
        not our own fillers."""
        ours = {f.getsockname()[1] for f in self.fillers}
        self.sock.setblocking(False)
        strangers = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                conn, peer = self.sock.accept()
                strangers += peer[1] not in ours
                conn.close()
            except BlockingIOError:
                time.sleep(0.02)
        return strangers

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


@pytest_twisted.ensureDeferred
async def test_client_disconnect_while_connecting_stops_the_connect(http: Any) -> None:
    """A client that leaves while the gateway is still connecting: the connect attempt is
    abandoned (no connection ever reaches the upstream) and the exchange is a client_abort."""
    backlog = Backlogged()
    text = gateway_yaml(f"http://127.0.0.1:{backlog.port}/v1")
    gw = await start_gateway(parse_config(text, "t.yaml", TEST_ENV))
    try:
        await in_thread(_send_then_leave, gw, raw_request(body()), False, 0.3)
        await sleep(0.1)
        assert gw.log_lines[-1].endswith("outcome=client_abort")
        # Had the connect gone on, the kernel would complete it once the queue has room.
        assert await in_thread(backlog.strangers_after_draining, 3.5) == 0
    finally:
        backlog.close()
        await stop_gateway(gw)


# --- timeouts -------------------------------------------------------------------------------


async def timed_post(http: Any, gw: Gateway, payload: bytes) -> tuple[int, bytes, float]:
    started = time.monotonic()
    response = await http.post(gw.base_url + "/chat/completions", payload, headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    content = await response.content()
    return response.code, content, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_response_header_timeout_is_504(short: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """An upstream that never answers: 504 timeout at the configured deadline (1 s)."""
    fake_openai.queue(Reply(hang=True))
    status, content, took = await timed_post(http, short, body())
    assert status == 504
    assert json.loads(content)["error"]["code"] == "timeout"
    assert 0.9 <= took <= 1.3


@pytest_twisted.ensureDeferred
async def test_first_event_timeout_is_504_before_commit(short: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """A stream whose headers came but whose first event never does: 504 JSON, not a 200."""
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=[b"data: {}\n\n"], first_delay=30))
    status, content, took = await timed_post(http, short, body(stream=True))
    assert status == 504
    assert json.loads(content)["error"]["code"] == "timeout"
    assert 0.9 <= took <= 1.3


def _chunk(text: str) -> bytes:
    return sse_data({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


@pytest_twisted.ensureDeferred
async def test_stream_idle_timeout_ends_with_error_event(short: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """Events, then silence: after the idle deadline one error event and no [DONE]."""
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=[_chunk("a"), _chunk("b")], hold_open=True))
    status, content, took = await timed_post(http, short, body(stream=True))
    assert status == 200
    text = content.decode()
    assert "[DONE]" not in text and '"content":"b"' in text
    last = json.loads(text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["code"] == "timeout"
    assert 0.9 <= took <= 1.4
    await wait_for(lambda: fake_openai.lost[0].called, timeout=0.5)


@pytest_twisted.ensureDeferred
async def test_total_deadline_cuts_a_slow_stream(short: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """A stream that never idles past 1 s but runs past the 3 s total deadline is cut there."""
    events = [_chunk(str(i)) for i in range(60)]
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=events, delay=0.2))
    status, content, took = await timed_post(http, short, body(stream=True))
    assert status == 200
    last = json.loads(content.decode().strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["code"] == "timeout"
    assert 2.8 <= took <= 3.4
    await wait_for(lambda: fake_openai.lost[0].called, timeout=0.5)


@pytest_twisted.ensureDeferred
async def test_connect_timeout(http: Any) -> None:
    """An upstream that cannot be connected to: 504 at the connect deadline."""
    backlog = Backlogged()
    text = gateway_yaml(f"http://127.0.0.1:{backlog.port}/v1") + "timeouts: { connect: 1 }\n"
    gw = await start_gateway(parse_config(text, "t.yaml", TEST_ENV))
    try:
        status, content, took = await timed_post(http, gw, body())
        assert status == 504
        assert json.loads(content)["error"]["code"] == "timeout"
        assert 0.9 <= took <= 1.4
    finally:
        backlog.close()
        await stop_gateway(gw)


def _trickle_headers(gw: Gateway, interval: float) -> tuple[float, bytes]:
    with connect(gw) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        try:
            for i in range(100):
                time.sleep(interval)
                sock.sendall(f"X-Slow-{i}: y\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass
        rest = recv_all(sock, 2)
        return time.monotonic() - started, rest


@pytest_twisted.ensureDeferred
async def test_absolute_header_deadline(short: Gateway) -> None:
    """A client trickling one header line every 0.2 s is cut off at the 1 s header deadline."""
    took, _ = await in_thread(_trickle_headers, short, 0.2)
    assert 0.9 <= took <= 1.5


def _slow_body(gw: Gateway) -> tuple[float, bytes]:
    with connect(gw) as sock:
        started = time.monotonic()
        sock.sendall(raw_request(b"x" * 10)[:-10].replace(b"Content-Length: 10", b"Content-Length: 100") + b"x" * 10)
        data = recv_all(sock, 3)
        return time.monotonic() - started, data


@pytest_twisted.ensureDeferred
async def test_body_deadline_is_408(short: Gateway) -> None:
    """A body that does not arrive within the body deadline gets a 408 JSON error."""
    took, data = await in_thread(_slow_body, short)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert 0.9 <= took <= 1.3
    await sleep(0.05)
    assert short.log_lines[-1].endswith("outcome=timeout")


def _idle_keepalive(gw: Gateway) -> float:
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        recv_all(sock, 5)
        return time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_idle_keepalive_connection_is_closed(short: Gateway) -> None:
    """An idle keep-alive connection is closed after the keepalive timeout."""
    took = await in_thread(_idle_keepalive, short)
    assert 0.9 <= took <= 1.5


# --- limits ---------------------------------------------------------------------------------


def _exchange(gw: Gateway, payload: bytes, wait: float = 3) -> bytes:
    with connect(gw) as sock:
        sock.sendall(payload)
        return recv_all(sock, wait)


def _status_and_error(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = rest.partition(b"\r\n")
        rest = rest[: int(size, 16)]
    return status, json.loads(rest)["error"]


@pytest_twisted.ensureDeferred
async def test_content_length_over_limit_is_413_before_the_body(short: Gateway, fake_openai: FakeOpenAI) -> None:
    """Content-Length over max_request_bytes: 413 at once, without waiting for the body."""
    head = raw_request(b"")[:-2].replace(b"Content-Length: 0", b"Content-Length: 999999") + b"\r\n"
    started = time.monotonic()
    data = await in_thread(_exchange, short, head, 1)
    assert time.monotonic() - started < 1.0
    status, error = _status_and_error(data)
    assert (status, error["code"]) == (413, "request_too_large")
    assert fake_openai.requests == []
    await sleep(0.05)
    assert short.log_lines[-1].split(" status=")[1].startswith("413")


@pytest_twisted.ensureDeferred
async def test_chunked_body_over_limit_is_413(short: Gateway, fake_openai: FakeOpenAI) -> None:
    """A chunked body is counted as it arrives and refused once over the limit."""
    chunk = b"x" * 1000
    payload = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {BACKEND_KEY}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6))
    data = await in_thread(_exchange, short, payload, 2)
    status, error = _status_and_error(data)
    assert (status, error["code"]) == (413, "request_too_large")
    assert fake_openai.requests == []


@pytest_twisted.ensureDeferred
async def test_concurrency_limit_is_fast_503(short: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """Past max_concurrent_requests a request gets 503 overloaded + Retry-After: 1 in < 50 ms."""
    fake_openai.queue(Reply(hang=True), Reply(hang=True), Reply(hang=True))
    holders = [defer.ensureDeferred(timed_post(http, short, body())) for _ in range(3)]
    await wait_for(lambda: len(fake_openai.requests) == 3)
    started = time.monotonic()
    response = await http.post(short.base_url + "/chat/completions", body(), headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    content = await response.content()
    took = time.monotonic() - started
    assert response.code == 503
    assert response.headers.getRawHeaders("retry-after") == ["1"]
    assert json.loads(content)["error"]["code"] == "overloaded"
    assert took < 0.05
    statuses = [r[0] for r in await defer.gatherResults(holders)]
    assert statuses == [504, 504, 504]


@pytest_twisted.ensureDeferred
async def test_oversized_headers_get_431_json(gateway: Gateway) -> None:
    """Request headers over 16 KiB are refused with a JSON 431."""
    big = "".join(f"X-Pad-{i}: {'y' * 1000}\r\n" for i in range(20))
    data = await in_thread(_exchange, gateway, raw_request(body(), extra=big), 2)
    status, error = _status_and_error(data)
    assert (status, error["code"]) == (431, "headers_too_large")


# --- backpressure ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_slow_reader_pauses_the_upstream(gateway: Gateway, fake_openai: FakeOpenAI, monkeypatch: Any) -> None:
    """A client that does not read: the gateway stops reading the upstream and holds under
    1 MiB for that stream; once the client reads, every byte arrives."""
    from gatewaylib import server

    channels: list[Any] = []
    original = server.GatewayChannel.connectionMade

    def track(self: Any) -> None:
        channels.append(self)
        original(self)

    monkeypatch.setattr(server.GatewayChannel, "connectionMade", track)
    events = [_chunk("x" * 1000) for _ in range(16000)] + [b"data: [DONE]\n\n"]
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=events))
    sock = socket.create_connection(("127.0.0.1", gateway.port.getHost().port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(raw_request(body(stream=True)))
    await sleep(1.0)
    def unsent(transport: Any) -> int:
        while not hasattr(transport, "dataBuffer"):  # unwrap protocol wrappers to the TCP transport
            transport = transport.transport
        return len(transport.dataBuffer) + sum(len(b) for b in transport._tempDataBuffer)

    assert unsent(channels[0].transport) < 1024 * 1024
    # The upstream is held back: most of its 16 MB still sits unsent on the fake's side.
    assert unsent(fake_openai.transports[0]) > 4 * 1024 * 1024
    received = await in_thread(recv_all, sock, 3)
    sock.close()
    assert received.count(b"data: ") == 16001
    assert b"data: [DONE]" in received[-200:]


# --- errors from the upstream ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_redirects_are_not_followed(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """An upstream redirect is a 502, and the redirect target is never contacted."""
    fake_openai.queue(Reply(302, {"location": fake_openai.base_url + "/elsewhere", "content-type": "text/html"}, b"<a>moved</a>"))
    status, content, _ = await timed_post(http, gateway, body())
    assert status == 502
    assert json.loads(content)["error"]["code"] == "bad_gateway"
    assert len(fake_openai.requests) == 1


@pytest_twisted.ensureDeferred
async def test_upstream_5xx_and_reset(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """500 -> 502 upstream_error; 503 -> 503 with Retry-After; a reset before headers -> 502."""
    fake_openai.queue(Reply(500, {"content-type": "application/json"}, b'{"error":{"message":"boom","type":"server_error"}}'))
    status, content, _ = await timed_post(http, gateway, body())
    assert (status, json.loads(content)["error"]["code"]) == (502, "upstream_error")
    fake_openai.queue(Reply(503, {"content-type": "application/json", "retry-after": "4"}, b'{"error":{"message":"busy","type":"server_error"}}'))
    response = await http.post(gateway.base_url + "/chat/completions", body(), headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    assert response.code == 503 and response.headers.getRawHeaders("retry-after") == ["4"]
    await response.content()
    fake_openai.queue(Reply(200, {"content-type": "text/event-stream"}, events=[b"x"], drop_after=0))
    status, content, _ = await timed_post(http, gateway, body(stream=True))
    assert (status, json.loads(content)["error"]["code"]) == (502, "upstream_unavailable")


@pytest_twisted.ensureDeferred
async def test_caller_headers_do_not_reach_the_upstream(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Only the gateway's own headers go upstream: caller cookies, org ids and forwarding
    headers are dropped, and the auth header is always the provider key."""
    extra = "Cookie: session=secret\r\nOpenAI-Organization: org-caller\r\nX-Forwarded-For: 1.2.3.4\r\nX-Api-Key: caller\r\n"
    await in_thread(_exchange, gateway, raw_request(body(), extra=extra), 2)
    sent = fake_openai.last.headers
    assert {"cookie", "openai-organization", "x-forwarded-for", "x-api-key"}.isdisjoint(sent)
    assert sent["authorization"].startswith("Bearer sk-fake-openai")


@pytest_twisted.ensureDeferred
async def test_sdk_raises_on_mid_stream_failure_every_time(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """After commit, a failure ends the stream with an error event: the openai SDK raises
    APIError in 100 of 100 trials (error events and cuts alternating)."""
    message = {"id": "msg_x", "type": "message", "role": "assistant", "model": "m", "stop_reason": "end_turn", "stop_sequence": None,
               "content": [{"type": "text", "text": "one two three"}], "usage": {"input_tokens": 1, "output_tokens": 3}}
    events = stream_events(message)
    client = openai_client(gateway)

    def trial(i: int) -> str:
        try:
            for _ in client.chat.completions.create(model="claude-sonnet", messages=MESSAGES, stream=True):
                pass
        except openai.APIError:
            return "APIError"
        return "returned normally"

    for i in range(100):
        if i % 2:
            fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=[*events[:5], b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n'], delay=0.002))
        else:
            fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=events[:5], drop_after=5, delay=0.002))
        assert await in_thread(trial, i) == "APIError"


@pytest_twisted.ensureDeferred
async def test_failed_requests_leave_no_reference_cycles(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """A failed request (upstream 429, 500, HTML page, malformed body) is freed by reference
    counting: nothing of it waits in a cycle for a full GC pass, which stalls every stream."""
    import gc

    from gatewaylib.exchange import Exchange
    from gatewaylib.server import GatewayRequest

    faults = [Reply(429, {"content-type": "application/json", "retry-after": "1"}, b'{"error":{"message":"slow down","type":"requests"}}'),
              Reply(500, {"content-type": "application/json"}, b'{"error":{"message":"boom","type":"server_error"}}'),
              Reply(502, {"content-type": "text/html"}, b"<html>bad gateway</html>")]
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for reply in faults * 5:
            fake_openai.queue(reply)
            status, _, _ = await timed_post(http, gateway, body())
            assert status in (429, 502)
        for _ in range(5):
            status, _, _ = await timed_post(http, gateway, b'{"model": "gpt-4o", "messages": [')
            assert status == 400
        await task.deferLater(reactor, 0.05, lambda: None)  # the Exchanges are finished
        gc.collect()
        cyclic = [o for o in gc.garbage if isinstance(o, Exchange | GatewayRequest)
                  or (type(o).__name__ == "frame" and "gatewaylib" in o.f_code.co_filename)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert cyclic == []
