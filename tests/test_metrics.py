"""Metrics, cost and the access log: exact values over real sockets, identities, cardinality
and secrets."""

from __future__ import annotations

import json
import random
import secrets
import shutil
import socket
import string
import subprocess
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task

from gatewaylib.chatformat import Usage
from gatewaylib.config import Price
from gatewaylib.pricing import PriceBook, cost
from tests.conftest import BACKEND_KEY, CHATBOT_KEY, Gateway, in_thread, start_gateway, stop_gateway
from tests.fakes.anthropic import FakeAnthropic, error_reply, stream_events
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: Any, gateway: Gateway) -> tuple[str, Samples]:
    response = await http.get(gateway.url + "/metrics")
    text = (await response.content()).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


async def chat(http: Any, gateway: Gateway, key: str | None, body: dict[str, Any]) -> tuple[int, bytes, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    response = await http.post(gateway.base_url + "/chat/completions", json.dumps(body).encode(), headers=headers)
    return response.code, await response.content(), response


def hi(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi there"}], **extra}


async def settle() -> None:
    """Let aborted requests' deferred bookkeeping run."""
    await task.deferLater(reactor, 0.05, lambda: None)


async def known_sequence(http: Any, gw: Gateway, fake_openai: FakeOpenAI) -> list[int]:
    """The mixed run the exact-value tests assert on; returns the statuses."""
    statuses = []
    for key, body in [
        (BACKEND_KEY, hi("gpt-4o")),  # openai 5/5
        (BACKEND_KEY, hi("gpt-4o", stream=True)),  # openai stream, usage injected: 5/5
        (CHATBOT_KEY, hi("claude-sonnet")),  # anthropic 12/4
        (CHATBOT_KEY, hi("claude-sonnet", stream=True, stream_options={"include_usage": True})),  # 12/4
        (BACKEND_KEY, hi("gpt-4o")),  # upstream 429 (queued below)
        ("sk-unknown-key-1234567890", hi("gpt-4o")),  # 401
        (CHATBOT_KEY, hi("fast")),  # 403
        (BACKEND_KEY, hi("gpt-4.1-nano")),  # prefix-routed, accepted: 5/5
        (BACKEND_KEY, hi("gpt-bogus-1")),  # prefix-routed, upstream 404 -> model "other"
        (BACKEND_KEY, hi("llama-3")),  # 404 model_not_found before any upstream
        (BACKEND_KEY, {"model": "gpt-4o"}),  # 400 missing messages
    ]:
        if len(statuses) == 4:
            fake_openai.queue(Reply(429, {"content-type": "application/json", "retry-after": "1"}, b'{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}'))
        status, _, _ = await chat(http, gw, key, body)
        statuses.append(status)
    response = await http.get(gw.url + "/v1/nothing-here")
    await response.content()
    statuses.append(response.code)
    await settle()
    return statuses


@pytest_twisted.ensureDeferred
async def test_exact_values_after_a_known_sequence(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """Every family carries the exact counts, tokens, cost and labels of a known mixed run."""
    statuses = await known_sequence(http, gateway, fake_openai)
    assert statuses == [200, 200, 200, 200, 429, 401, 403, 200, 404, 404, 400, 404]
    _, s = await scrape(http, gateway)
    req = "llm_requests_total"
    assert value(s, req, virtual_key="my-backend", provider="openai", model="gpt-4o", status="200") == 2
    assert value(s, req, virtual_key="my-backend", provider="openai", model="gpt-4o", status="429") == 1
    assert value(s, req, virtual_key="chatbot", provider="anthropic", model="claude-sonnet", status="200") == 2
    assert value(s, req, virtual_key="none", provider="none", model="none", status="401") == 1
    assert value(s, req, virtual_key="chatbot", provider="none", model="other", status="403") == 1
    assert value(s, req, virtual_key="my-backend", provider="openai", model="gpt-4.1-nano", status="200") == 1
    assert value(s, req, virtual_key="my-backend", provider="openai", model="other", status="404") == 1
    assert value(s, req, virtual_key="my-backend", provider="none", model="other", status="404") == 1
    assert value(s, req, virtual_key="my-backend", provider="none", model="none", status="400") == 1
    assert value(s, req, virtual_key="none", provider="none", model="none", status="404") == 1
    assert total(s, req) == len(statuses)

    tok = "llm_tokens_total"
    assert value(s, tok, virtual_key="my-backend", provider="openai", model="gpt-4o", direction="prompt") == 2 * 5
    assert value(s, tok, virtual_key="my-backend", provider="openai", model="gpt-4o", direction="completion") == 2 * 5
    assert value(s, tok, virtual_key="chatbot", provider="anthropic", model="claude-sonnet", direction="prompt") == 2 * 12
    assert value(s, tok, virtual_key="chatbot", provider="anthropic", model="claude-sonnet", direction="completion") == 2 * 4
    assert value(s, tok, virtual_key="my-backend", provider="openai", model="gpt-4.1-nano", direction="prompt") == 5

    usd = "llm_cost_dollars_total"
    # gpt-4o: $2.50 in / $10 out per 1M; claude-sonnet-4-5: $3 / $15; gpt-4.1-nano: $0.10 / $0.40.
    assert value(s, usd, virtual_key="my-backend", provider="openai", model="gpt-4o") == pytest.approx(2 * (5 * 2.5 + 5 * 10) / 1e6)
    assert value(s, usd, virtual_key="chatbot", provider="anthropic", model="claude-sonnet") == pytest.approx(2 * (12 * 3 + 4 * 15) / 1e6)
    assert value(s, usd, virtual_key="my-backend", provider="openai", model="gpt-4.1-nano") == pytest.approx((5 * 0.10 + 5 * 0.40) / 1e6)

    err = "llm_provider_errors_total"
    assert value(s, err, provider="openai", error_type="rate_limited") == 1
    assert value(s, err, provider="openai", error_type="upstream_4xx") == 1
    assert total(s, err) == 2

    assert value(s, "llm_request_duration_seconds_count", virtual_key="chatbot", provider="anthropic", model="claude-sonnet", stream="true") == 1
    assert value(s, "llm_request_duration_seconds_count", virtual_key="chatbot", provider="anthropic", model="claude-sonnet", stream="false") == 1
    assert value(s, "llm_stream_first_byte_seconds_count", virtual_key="my-backend", provider="openai", model="gpt-4o") == 1
    assert value(s, "llm_stream_first_byte_seconds_count", virtual_key="chatbot", provider="anthropic", model="claude-sonnet") == 1
    assert value(s, "llm_requests_in_flight") == 0
    assert value(s, "llm_gateway_overhead_seconds_count", provider="openai") == 5


@pytest_twisted.ensureDeferred
async def test_cached_tokens_are_billed_at_cache_prices(gateway: Gateway, fake_anthropic: FakeAnthropic, http: Any) -> None:
    """Cache reads and writes are priced at their own rates, and counted in prompt tokens."""
    body = hi("claude-sonnet")
    fake_anthropic.queue(lambda rec: fake_anthropic.reply_for(
        rec.json, [{"type": "text", "text": "ok"}],
        usage={"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 50},
    ))
    status, content, _ = await chat(http, gateway, BACKEND_KEY, body)
    assert status == 200
    assert json.loads(content)["usage"]["prompt_tokens"] == 420
    await settle()
    _, s = await scrape(http, gateway)
    labels = {"virtual_key": "my-backend", "provider": "anthropic", "model": "claude-sonnet"}
    assert value(s, "llm_tokens_total", **labels, direction="prompt") == 420
    # 100 x $3 + 300 x $0.30 (read) + 20 x $3.75 (write) + 50 x $15, per million.
    assert value(s, "llm_cost_dollars_total", **labels) == pytest.approx((300 + 90 + 75 + 750) / 1e6)


def test_cost_formula_and_price_lookup(make_config: Any) -> None:
    """Uncached, cache-read, cache-write and output tokens each at their price; dated
    snapshots resolve to their family; alias overrides win; echo is free."""
    price = Price(input=2.0, output=8.0, cache_read=0.5, cache_write=2.5)
    usage = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=600, cache_write_tokens=100)
    assert cost(usage, price) == pytest.approx((300 * 2 + 600 * 0.5 + 100 * 2.5 + 100 * 8) / 1e6)
    assert cost(usage, Price(1.0, 1.0)) == pytest.approx(1100 / 1e6)  # no cache prices: input price
    book = PriceBook(make_config("http://127.0.0.1:9/v1"))
    assert book.price_for(None, "claude-sonnet-4-5-20250929") == Price(3.0, 15.0, 0.30, 3.75)
    assert book.price_for(None, "gpt-4o-mini") == Price(0.15, 0.60, 0.075)
    assert book.price_for("demo", "echo-1") == Price(0.0, 0.0)
    assert book.price_for(None, "unheard-of") is None


@pytest_twisted.ensureDeferred
async def test_alias_price_override(fake_openai: FakeOpenAI, http: Any) -> None:
    """models.<alias>.pricing overrides the default price list."""
    from gatewaylib.config import parse_config
    from tests.conftest import TEST_ENV, gateway_yaml

    text = gateway_yaml(fake_openai.base_url).replace(
        '"fast":          { provider: "openai", model: "gpt-4o-mini" }',
        '"fast":          { provider: "openai", model: "gpt-4o-mini", pricing: { input: 1000, output: 2000 } }',
    )
    assert "pricing:" in text
    gw = await start_gateway(parse_config(text, "t.yaml", TEST_ENV))
    try:
        status, _, _ = await chat(http, gw, BACKEND_KEY, hi("fast"))
        assert status == 200
        await settle()
        _, s = await scrape(http, gw)
        assert value(s, "llm_cost_dollars_total", virtual_key="my-backend", provider="openai", model="fast") == pytest.approx((5 * 1000 + 5 * 2000) / 1e6)
    finally:
        await stop_gateway(gw)


def _abort_after_first_bytes(port: int, key: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        return sock.recv(4096)


@pytest_twisted.ensureDeferred
async def test_accounting_identity_with_aborts(gateway: Gateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, http: Any) -> None:
    """requests sent = sum of llm_requests_total = access-log lines, over a mixed run that includes
    errors and clients leaving mid-stream and before any byte."""
    sent = len(await known_sequence(http, gateway, fake_openai))
    port = gateway.port.getHost().port
    message = {"id": "msg_slow", "type": "message", "role": "assistant", "model": "m", "stop_reason": "end_turn", "stop_sequence": None,
               "content": [{"type": "text", "text": "a b c d e f"}], "usage": {"input_tokens": 3, "output_tokens": 6}}
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(message), delay=0.2))
    first = await in_thread(_abort_after_first_bytes, port, BACKEND_KEY, hi("claude-sonnet", stream=True))
    assert first.startswith(b"HTTP/1.1 200")
    fake_openai.queue(Reply(hang=True))
    await in_thread(_abort_after_first_bytes_no_wait, port, BACKEND_KEY, hi("gpt-4o"))
    sent += 2
    for _ in range(40):
        await task.deferLater(reactor, 0.05, lambda: None)
        if len(gateway.log_lines) >= sent:
            break
    await settle()
    _, s = await scrape(http, gateway)
    assert total(s, "llm_requests_total") == sent
    assert len(gateway.log_lines) == sent
    outcomes = [line.rsplit("outcome=", 1)[1] for line in gateway.log_lines]
    assert outcomes.count("client_abort") == 2, "\n".join(gateway.log_lines[-2:])
    assert value(s, "llm_requests_total", virtual_key="my-backend", provider="openai", model="gpt-4o", status="499") == 1
    assert value(s, "llm_requests_in_flight") == 0


def _abort_after_first_bytes_no_wait(port: int, key: str, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        import time

        time.sleep(0.3)


@pytest_twisted.ensureDeferred
async def test_random_model_names_add_at_most_one_series(gateway: Gateway, http: Any) -> None:
    """1,000 random model names (unroutable, or prefix-routed and refused upstream) add at most
    one series per family."""
    _, before = await scrape(http, gateway)
    rng = random.Random(7)

    def name() -> str:
        tail = "".join(rng.choices(string.ascii_lowercase + string.digits, k=10))
        return rng.choice(["gpt-bogus-", "zz-", "mistral-"]) + tail

    for _batch in range(20):
        await defer.gatherResults([defer.ensureDeferred(chat(http, gateway, BACKEND_KEY, hi(name()))) for _ in range(50)])
    await settle()
    text, after = await scrape(http, gateway)
    new_series = {key for key in after if key not in before}
    by_family: dict[str, int] = {}
    for sample_name, _labels in new_series:
        family = sample_name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum").removesuffix("_created")
        by_family[family] = by_family.get(family, 0) + 1
    # Unroutable names share one series; prefix-routed names the upstream refused share one
    # more (their provider label differs): bounded by the config, whatever the names.
    assert by_family.get("llm_requests_total", 0) <= 2
    assert total(after, "llm_requests_total") - total(before, "llm_requests_total") == 1000
    assert "bogus" not in text and "zz-" not in text


def _pieces(secret: str) -> set[str]:
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


@pytest_twisted.ensureDeferred
async def test_planted_secrets_never_leak(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, http: Any) -> None:
    """Random provider and virtual keys: no 8-character piece of any appears in /metrics, the
    access log, response bodies or response headers, on success and error paths."""
    from gatewaylib.config import parse_config
    from tests.conftest import gateway_yaml

    keys = {name: "sk-" + secrets.token_urlsafe(24) for name in ("T_OPENAI_KEY", "T_ANTHROPIC_KEY", "T_BACKEND", "T_CHATBOT")}
    fake_openai.api_key = keys["T_OPENAI_KEY"]
    fake_anthropic.api_key = keys["T_ANTHROPIC_KEY"]
    gw = await start_gateway(parse_config(gateway_yaml(fake_openai.base_url, fake_anthropic.base_url), "t.yaml", keys))
    outputs: list[str] = []
    try:
        fake_openai.queue(Reply(401, {"content-type": "application/json"}, json.dumps({"error": {"message": f"Incorrect API key provided: {keys['T_OPENAI_KEY']}", "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()))
        fake_anthropic.queue(error_reply(400, "invalid_request_error", f"bad request for key {keys['T_ANTHROPIC_KEY']}"))
        for key, body in [
            (keys["T_BACKEND"], hi("gpt-4o")),
            (keys["T_BACKEND"], hi("claude-sonnet")),
            (keys["T_BACKEND"], hi("gpt-4o", stream=True)),
            (keys["T_CHATBOT"], hi("claude-sonnet", stream=True)),
            (keys["T_CHATBOT"], hi("fast")),
            (keys["T_BACKEND"] + "x", hi("gpt-4o")),
            (keys["T_BACKEND"], hi("nope")),
        ]:
            status, content, response = await chat(http, gw, key, body)
            outputs.append(str(status) + content.decode())
            outputs.append(json.dumps([(k.decode(), [v.decode() for v in vs]) for k, vs in response.headers.getAllRawHeaders()]))
        await settle()
        text, _ = await scrape(http, gw)
        outputs += [text, gw.log.getvalue()]
    finally:
        await stop_gateway(gw)
    blob = "\n".join(outputs)
    assert "200" in blob and "401" in blob and "403" in blob
    for secret in keys.values():
        leaked = [p for p in _pieces(secret) if p in blob]
        assert leaked == [], f"a piece of a planted key leaked: {leaked[:3]}"


@pytest_twisted.ensureDeferred
async def test_access_log_line_and_request_id(gateway: Gateway, http: Any) -> None:
    """One key=value line per request with every documented field; x-request-id matches."""
    status, _, response = await chat(http, gateway, CHATBOT_KEY, hi("claude-sonnet"))
    assert status == 200
    await settle()
    line = gateway.log_lines[-1]
    fields = dict(part.split("=", 1) for part in line.split(" "))
    assert list(fields) == ["time", "request_id", "method", "path", "status", "duration_ms", "virtual_key", "provider", "model", "upstream_model", "stream", "prompt_tokens", "completion_tokens", "cost", "outcome"]
    assert fields["request_id"] == response.headers.getRawHeaders("x-request-id")[0]
    assert fields["request_id"].startswith("req_")
    assert {k: fields[k] for k in ("method", "path", "status", "virtual_key", "provider", "model", "upstream_model", "stream", "prompt_tokens", "completion_tokens", "cost", "outcome")} == {
        "method": "POST", "path": "/v1/chat/completions", "status": "200", "virtual_key": "chatbot", "provider": "anthropic",
        "model": "claude-sonnet", "upstream_model": "claude-sonnet-4-5", "stream": "false", "prompt_tokens": "12",
        "completion_tokens": "4", "cost": "9.6e-05", "outcome": "ok",
    }
    assert float(fields["duration_ms"]) > 0


@pytest_twisted.ensureDeferred
async def test_json_access_log(fake_openai: FakeOpenAI, make_config: Any, http: Any) -> None:
    """log_format: json writes the same fields as one JSON object per line."""
    import dataclasses

    config = dataclasses.replace(make_config(fake_openai.base_url), log_format="json")
    gw = await start_gateway(config)
    try:
        await chat(http, gw, None, hi("gpt-4o"))
        await settle()
        record = json.loads(gw.log_lines[-1])
        assert (record["status"], record["outcome"], record["virtual_key"], record["stream"]) == (401, "auth_fail", "-", False)
    finally:
        await stop_gateway(gw)


@pytest_twisted.ensureDeferred
async def test_promtool_accepts_the_exposition(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """`promtool check metrics` (Debian's prometheus package) reports no problems."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make test installs Debian's prometheus package as root)")
    await known_sequence(http, gateway, fake_openai)
    text, _ = await scrape(http, gateway)
    result = await in_thread(subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
