"""OpenAI-compatible dialects (translation.md F.6, vectors 98-99) and usage placement, no network."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gatewaylib.config import ProviderConfig
from gatewaylib.errors import GatewayError, InvalidRequest
from gatewaylib.providers.base import Call
from gatewaylib.providers.openai import OpenAIProvider, OpenAIStreamTranslator
from gatewaylib.providers.openai_compat import (
    GroqDialect,
    MistralDialect,
    mistral_error,
    mistral_tool_id,
)
from gatewaylib.routing import Route
from gatewaylib.sse import SSEEvent

CREATED = 1767225600


def make_call(body: dict[str, Any], stream: bool = False, include_usage: bool = False) -> Call:
    return Call(body=body, route=Route("p", "up-model", "alias"), stream=stream, include_usage=include_usage, created=CREATED)


def provider(kind: str, **config: Any) -> OpenAIProvider:
    from twisted.internet import reactor

    dialect = {"mistral": MistralDialect, "groq": GroqDialect}.get(kind)
    cfg = ProviderConfig(name=kind, type=kind, base_url="http://127.0.0.1:9/v1", api_key="k", **config)
    return OpenAIProvider(cfg, reactor, dialect() if dialect else None)


def sent(kind: str, body: dict[str, Any], **call: Any) -> dict[str, Any]:
    c = make_call(body, **call)
    return json.loads(provider(kind).build_request(c).body)


HISTORY = [
    {"role": "user", "content": "Weather?", "name": "bob"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_PTLP8xhu3uwZk4l3", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_PTLP8xhu3uwZk4l3", "content": "sunny"},
]


def test_v98_mistral_tool_ids_remapped_consistently() -> None:
    body = sent("mistral", {"model": "m", "messages": HISTORY})
    new_id = body["messages"][1]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", new_id)
    assert body["messages"][2]["tool_call_id"] == new_id
    assert mistral_tool_id("call_PTLP8xhu3uwZk4l3") == new_id  # deterministic across requests
    assert mistral_tool_id("D681PevKs") == "D681PevKs"  # Mistral's own ids are kept


def test_v98_mistral_ids_mapped_back_in_responses() -> None:
    c = make_call({"model": "m", "messages": HISTORY})
    p = provider("mistral")
    p.build_request(c)
    new_id = mistral_tool_id("call_PTLP8xhu3uwZk4l3")
    upstream = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [{"id": new_id, "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}
    out = json.loads(p.parse_response(c, json.dumps(upstream).encode()))
    assert out["choices"][0]["message"]["tool_calls"][0]["id"] == "call_PTLP8xhu3uwZk4l3"


def test_mistral_request_whitelist_and_renames() -> None:
    body = sent("mistral", {
        "model": "m", "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "hi", "name": "bob"}],
        "seed": 7, "max_completion_tokens": 50, "logprobs": True, "user": "u1", "stream": True,
        "stream_options": {"include_usage": True}, "safe_prompt": True, "temperature": 0.3, "metadata": {"a": "b"},
    }, stream=True, include_usage=True)
    assert body == {
        "model": "up-model", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}],
        "random_seed": 7, "max_tokens": 50, "stream": True, "safe_prompt": True, "temperature": 0.3,
    }


def test_mistral_finish_reasons() -> None:
    c = make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    p = provider("mistral")
    p.build_request(c)
    upstream = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "model_length"}]}
    assert json.loads(p.parse_response(c, json.dumps(upstream).encode()))["choices"][0]["finish_reason"] == "length"
    upstream["choices"][0]["finish_reason"] = "error"
    with pytest.raises(GatewayError) as info:
        p.parse_response(c, json.dumps(upstream).encode())
    assert (info.value.status, info.value.code) == (502, "upstream_error")


def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = "absent") -> str:
    obj: dict[str, Any] = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "mistral-small", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage != "absent":
        obj["usage"] = usage
    return json.dumps(obj)


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def run(translator: OpenAIStreamTranslator, events: list[str]) -> list[Any]:
    out: list[bytes] = []
    for data in events:
        out += translator.feed(SSEEvent(None, data))
    out += translator.finish()
    return [json.loads(b[6:]) if b != b"data: [DONE]\n\n" else "[DONE]" for b in out]


def mistral_stream(include_usage: bool) -> list[Any]:
    c = make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]}, stream=True, include_usage=include_usage)
    p = provider("mistral")
    p.build_request(c)
    return run(p.stream_translator(c), [
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"id": "abcdefghi", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"content": ""}, "model_length", USAGE),
        "[DONE]",
    ])


def test_mistral_stream_usage_moves_to_a_separate_chunk() -> None:
    events = mistral_stream(include_usage=True)
    assert events[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0  # index added for the SDK
    assert events[2]["choices"][0]["finish_reason"] == "length" and events[2]["usage"] is None
    assert events[3] == {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "mistral-small", "system_fingerprint": None, "choices": [], "usage": {
        "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}}
    assert events[4] == "[DONE]"
    events = mistral_stream(include_usage=False)
    assert "usage" not in events[2] and events[3] == "[DONE]"


def test_mistral_stream_error_finish_is_relayed_as_error_event() -> None:
    c = make_call({"model": "m", "messages": [{"role": "user", "content": "x"}]}, stream=True)
    p = provider("mistral")
    p.build_request(c)
    translator = p.stream_translator(c)
    events = run(translator, [chunk({"role": "assistant", "content": ""}), chunk({"content": "a"}), chunk({}, "error"), chunk({"content": "late"})])
    assert events[-1]["error"]["code"] == "upstream_error" and "[DONE]" not in events
    assert translator.relayed_error == "upstream_5xx"


def test_generic_server_usage_on_finish_chunk_gets_separate_usage_chunk() -> None:
    """A server that ignores stream_options but reports usage on its last chunk (vLLM-style)."""
    translator = OpenAIStreamTranslator("local", False, client_usage=True)
    events = run(translator, [chunk({"role": "assistant"}), chunk({"content": "hi"}), chunk({}, "stop", USAGE), "[DONE]"])
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 13
    assert translator.usage is not None and translator.usage.total_tokens == 13


def test_groq_usage_in_x_groq_is_metered() -> None:
    translator = OpenAIStreamTranslator("groq", False, client_usage=False)
    last = json.loads(chunk({}, "stop"))
    last["x_groq"] = {"id": "req_1", "usage": USAGE}
    events = run(translator, [chunk({"role": "assistant"}), json.dumps(last), "[DONE]"])
    assert translator.usage is not None and translator.usage.prompt_tokens == 10
    assert events[-1] == "[DONE]" and len(events) == 3


def test_server_reporting_no_usage_gets_none_invented() -> None:
    translator = OpenAIStreamTranslator("local", False, client_usage=True)
    events = run(translator, [chunk({"role": "assistant"}), chunk({}, "stop"), "[DONE]"])
    assert translator.usage is None and len(events) == 3


def test_openai_usage_chunk_not_duplicated() -> None:
    translator = OpenAIStreamTranslator("openai", False, client_usage=True)
    usage_chunk = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": USAGE})
    events = run(translator, [chunk({"role": "assistant"}, usage=None), chunk({}, "stop", None), usage_chunk, "[DONE]"])
    assert [e for e in events if e != "[DONE]" and e["choices"] == []] == [json.loads(usage_chunk)]


def test_v99_groq_strips_unsupported_fields() -> None:
    body = sent("groq", {"model": "g", "messages": [{"role": "user", "content": "hi", "name": "bob"}], "logprobs": True, "top_logprobs": 2, "logit_bias": {"1": 2}, "temperature": 0})
    assert body == {"model": "up-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    with pytest.raises(InvalidRequest) as info:
        sent("groq", {"model": "g", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert info.value.param == "n"


def test_stream_usage_false_never_sends_stream_options() -> None:
    body = sent("openai", {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}, stream=True, include_usage=True)
    assert body["stream_options"] == {"include_usage": True}
    c = make_call({"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}, stream=True, include_usage=True)
    body = json.loads(provider("openai", stream_usage=False).build_request(c).body)
    assert "stream_options" not in body


def test_mistral_errors() -> None:
    detail = {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"}]}
    err = mistral_error("mistral", 422, {}, json.dumps(detail).encode())
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", "stream_options")
    assert err.message == "stream_options: Extra inputs are not permitted"
    body = {"object": "error", "message": "Tool call id was x but must be a-z, A-Z, 0-9, with a length of 9.", "type": "invalid_request_message_order", "param": None, "code": "3280"}
    err = mistral_error("mistral", 400, {}, json.dumps(body).encode())
    assert (err.status, err.code) == (400, "3280") and err.message.startswith("Tool call id was x")
    err = mistral_error("mistral", 429, {"retry-after": "2"}, json.dumps({"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited", "param": None, "code": "1300"}).encode())
    assert (err.status, err.type, err.response_headers()) == (429, "rate_limit_error", {"retry-after": "2"})
    err = mistral_error("mistral", 401, {}, b'{"message":"Unauthorized","request_id":"r"}')
    assert (err.status, err.code) == (502, "upstream_auth_failed")


@pytest.mark.parametrize(("model", "price"), [
    ("gemini-2.5-flash", (0.30, 2.50)), ("gemini-2.5-flash-lite-preview-09-2025", (0.10, 0.40)), ("gemini-3-pro-preview", (2.00, 12.00)),
    ("mistral-small-latest", (0.10, 0.30)), ("mistral-large-2411", (2.00, 6.00)), ("codestral-2508", (0.30, 0.90)),
    ("llama-3.3-70b-versatile", (0.59, 0.79)), ("openai/gpt-oss-120b", (0.15, 0.75)),
])
def test_default_prices_for_new_providers(model: str, price: tuple[float, float]) -> None:
    from gatewaylib.pricing import _lookup, default_prices

    found = _lookup(default_prices(), model)
    assert found is not None and (found.input, found.output) == price
