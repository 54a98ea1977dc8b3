"""Bad input never hurts: the right 4xx with OpenAI's error shape and a real param, never a 5xx."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_KEY, Gateway, in_thread

GOOD = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def deep(n: int) -> bytes:
    return b'{"model":"demo","messages":' + b"[" * n + b"]" * n + b"}"


CASES: list[tuple[str, bytes, int, str | None, str]] = [
    ("malformed JSON", b'{"model": "demo", ', 400, None, "invalid_json"),
    ("empty body", b"", 400, None, "invalid_json"),
    ("not an object", b"[1, 2]", 400, None, "invalid_json"),
    ("a string", b'"hello"', 400, None, "invalid_json"),
    ("duplicate keys", b'{"model":"demo","model":"gpt-4o","messages":[{"role":"user","content":"x"}]}', 400, None, "invalid_json"),
    ("NaN", b'{"model":"demo","temperature":NaN,"messages":[{"role":"user","content":"x"}]}', 400, None, "invalid_json"),
    ("100k-deep nesting", deep(100_000), 400, None, "invalid_json"),
    ("invalid UTF-8", b'{"model":"demo","messages":[{"role":"user","content":"\xff\xfe"}]}', 400, None, "invalid_json"),
    ("missing model", b'{"messages":[{"role":"user","content":"x"}]}', 400, "model", "invalid_value"),
    ("model not a string", b'{"model":7,"messages":[]}', 400, "model", "invalid_value"),
    ("missing messages", b'{"model":"demo"}', 400, "messages", "invalid_value"),
    ("messages not a list", b'{"model":"demo","messages":{"role":"user"}}', 400, "messages", "invalid_value"),
    ("message not an object", b'{"model":"demo","messages":["hi"]}', 400, "messages[0]", "invalid_value"),
    ("role missing", b'{"model":"demo","messages":[{"content":"hi"}]}', 400, "messages[0].role", "invalid_value"),
    ("stream not a bool", b'{"model":"demo","stream":"yes","messages":[{"role":"user","content":"x"}]}', 400, "stream", "invalid_value"),
    ("stream_options wrong", b'{"model":"demo","stream":true,"stream_options":3,"messages":[{"role":"user","content":"x"}]}', 400, "stream_options", "invalid_value"),
    ("api_base override", b'{"model":"demo","api_base":"http://evil","messages":[{"role":"user","content":"x"}]}', 400, "api_base", "invalid_value"),
    ("base_url override", b'{"model":"demo","base_url":"http://evil","messages":[{"role":"user","content":"x"}]}', 400, "base_url", "invalid_value"),
    ("api_key override", b'{"model":"demo","api_key":"sk-x","messages":[{"role":"user","content":"x"}]}', 400, "api_key", "invalid_value"),
    ("extra_headers override", b'{"model":"demo","extra_headers":{"a":"b"},"messages":[{"role":"user","content":"x"}]}', 400, "extra_headers", "invalid_value"),
]


@pytest.mark.parametrize(("name", "payload", "status", "param", "code"), CASES, ids=[c[0] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_bad_bodies_get_400_with_param(gateway: Gateway, http: Any, name: str, payload: bytes, status: int, param: str | None, code: str) -> None:
    """Each malformed body gets its 400, OpenAI's error shape, and the offending param."""
    response = await http.post(gateway.base_url + "/chat/completions", payload, headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    content = json.loads(await response.content())
    assert response.code == status
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert set(content["error"]) == {"message", "type", "param", "code"}
    assert content["error"]["type"] == "invalid_request_error"
    assert (content["error"]["param"], content["error"]["code"]) == (param, code)


@pytest_twisted.ensureDeferred
async def test_anthropic_route_rejects_bad_tool_arguments(gateway: Gateway, http: Any) -> None:
    """Tool-call arguments that are not JSON are a 400 with their exact param on a translated route."""
    body = {"model": "claude-sonnet", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}
    response = await http.post(gateway.base_url + "/chat/completions", json.dumps(body).encode(), headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    assert response.code == 400
    assert json.loads(await response.content())["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "function", "bogus", 3])},
    optional={
        "content": json_values | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "file", "input_audio", "x"])}, optional={"text": json_values, "image_url": json_values, "file": json_values}), max_size=3),
        "tool_calls": json_values | st.lists(st.fixed_dictionaries({"id": json_values, "function": st.fixed_dictionaries({}, optional={"name": json_values, "arguments": json_values})}), max_size=2),
        "tool_call_id": json_values,
        "thinking_blocks": json_values,
    },
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["demo", "claude-sonnet", "gpt-4o"]) | json_values, "messages": st.lists(message, max_size=5) | json_values},
    optional={
        name: json_values
        for name in ["stream", "stream_options", "tools", "tool_choice", "temperature", "top_p", "stop", "n", "max_tokens",
                     "max_completion_tokens", "response_format", "reasoning_effort", "user", "parallel_tool_calls", "functions", "function_call"]
    },
)


@pytest.mark.timeout(300)
@pytest_twisted.ensureDeferred
async def test_random_bodies_never_5xx(gateway: Gateway) -> None:
    """Hundreds of random bodies (structured and raw bytes) through the real HTTP server, to the
    echo provider and both fake upstreams: never a 5xx, always OpenAI's error shape."""
    url = gateway.base_url + "/chat/completions"

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.one_of(chat_bodies.map(lambda b: json.dumps(b).encode()), st.binary(max_size=200)))
    def check(payload: bytes) -> None:
        request = urllib.request.Request(url, data=payload, headers={"Authorization": f"Bearer {BACKEND_KEY}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        assert status < 500, content[:300]
        if status >= 400:
            assert set(json.loads(content)["error"]) == {"message", "type", "param", "code"}

    # Hypothesis drives blocking requests from a thread while the reactor serves them.
    await in_thread(check)
