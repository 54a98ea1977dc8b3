"""Anthropic translation vectors (translation.md section G, 1-80), without any network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatewaylib.errors import GatewayError, InvalidRequest, StreamInterrupted
from gatewaylib.providers.anthropic import (
    AnthropicStreamTranslator,
    MessageAccumulator,
    anthropic_error,
    message_events,
)
from gatewaylib.providers.anthropic_request import RequestPlan, translate_request
from gatewaylib.providers.base import Call
from gatewaylib.routing import Route
from gatewaylib.sse import SSEEvent

MODEL = "claude-sonnet-4-5"
LEGACY = "claude-3-5-haiku-20241022"
CREATED = 1767225600


def tr(messages: list[dict[str, Any]], model: str = MODEL, **fields: Any) -> dict[str, Any]:
    return translate_request({"model": "alias", "messages": messages, **fields}, model).body


def u(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def a(text: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def call(id_: str, name: str = "get_weather", args: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def tool(id_: str, content: Any = "r", **extra: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": id_, "content": content, **extra}


def text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def bad(messages: list[dict[str, Any]], **fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        tr(messages, **fields)
    assert info.value.status == 400
    return info.value


# --- Requests (vectors 1-49) ----------------------------------------------------------------


def test_v1_default_max_tokens_block_form_no_system() -> None:
    assert tr([u("Hi")]) == {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": [text("Hi")]}]}
    assert translate_request({"messages": [u("Hi")]}, MODEL, default_max_tokens=1000).body["max_tokens"] == 1000


def test_v2_to_v5_system_hoisting() -> None:
    body = tr([{"role": "system", "content": "A"}, u("u1"), {"role": "system", "content": "B"}, u("u2")])
    assert body["system"] == "A\nB"
    assert body["messages"] == [{"role": "user", "content": [text("u1"), text("u2")]}]
    assert tr([{"role": "developer", "content": "D"}, u("x")])["system"] == "D"
    assert tr([{"role": "system", "content": [text("A"), text("B")]}, u("x")])["system"] == "A\nB"
    assert "system" not in tr([{"role": "system", "content": ""}, u("x")])
    cached = tr([{"role": "system", "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]}, u("x")])
    assert cached["system"] == [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]


def test_v6_v7_merge_same_role() -> None:
    assert tr([u("a"), u("b")])["messages"] == [{"role": "user", "content": [text("a"), text("b")]}]
    assert tr([u("q"), a("a1"), a("a2"), u("q2")])["messages"][1] == {"role": "assistant", "content": [text("a1"), text("a2")]}


def test_v8_assistant_first_is_unchanged() -> None:
    assert tr([a("Hello"), u("q")])["messages"] == [
        {"role": "assistant", "content": [text("Hello")]},
        {"role": "user", "content": [text("q")]},
    ]


def test_v9_to_v13_content_parts() -> None:
    png = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "high"}}
    assert tr([u([png])])["messages"][0]["content"] == [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]
    url = {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}
    assert tr([u([url])])["messages"][0]["content"] == [{"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}}]
    bmp = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
    assert bad([u([text("look"), bmp])]).param == "messages[0].content[1].image_url"
    pdf = {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBERi0="}}
    assert tr([u([pdf])])["messages"][0]["content"] == [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]
    file_pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
    assert tr([u([file_pdf])])["messages"][0]["content"][0]["type"] == "document"
    assert bad([u([{"type": "file", "file": {"file_id": "file-123"}}])]).param == "messages[0].content[0].file.file_id"
    assert tr([u([text(""), text("hi")])])["messages"][0]["content"] == [text("hi")]
    assert tr([u([{"type": "image_url", "image_url": "https://x.test/a.png"}])])["messages"][0]["content"][0]["source"]["type"] == "url"
    assert tr([u([{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}, text("t")])])["messages"][0]["content"] == [text("t")]


def test_v14_to_v17_tool_calls() -> None:
    body = tr([u("q"), a("", tool_calls=[call("c1")]), tool("c1")])
    assert body["messages"][1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}}]}
    body = tr([u("q"), a(None, tool_calls=[call("c1", args="")]), tool("c1")])
    assert body["messages"][1]["content"][0]["input"] == {}
    assert bad([u("q"), a(None, tool_calls=[call("c1", args='{city:')]), tool("c1")]).param == "messages[1].tool_calls[0].function.arguments"


def test_v18_to_v20_tool_results_merged_first() -> None:
    body = tr([u("q"), a(None, tool_calls=[call("c1"), call("c2")]), tool("c1", "r1"), tool("c2", "r2")])
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
            {"type": "tool_result", "tool_use_id": "c2", "content": "r2"},
        ],
    }
    body = tr([u("q"), a(None, tool_calls=[call("c1")]), tool("c1"), u("thanks")])
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": "r"}, text("thanks")]
    body = tr([u("q"), a(None, tool_calls=[call("c1"), call("c2")]), tool("c1"), u("x"), tool("c2")])
    assert [b.get("tool_use_id", b.get("text")) for b in body["messages"][2]["content"]] == ["c1", "c2", "x"]


def test_v21_to_v23_tool_result_content() -> None:
    body = tr([u("q"), a(None, tool_calls=[call("c1")]), tool("c1", [text("a"), text("b")])])
    assert body["messages"][2]["content"][0]["content"] == [text("a"), text("b")]
    body = tr([u("q"), a(None, tool_calls=[call("c1")]), tool("c1", "")])
    assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "c1"}
    body = tr([u("q"), a(None, tool_calls=[call("c1")]), tool("c1", "boom", is_error=True)])
    assert body["messages"][2]["content"][0]["is_error"] is True


def test_v24_id_sanitised_on_both_sides() -> None:
    body = tr([u("q"), a(None, tool_calls=[call("call:ab.1")]), tool("call:ab.1")])
    assert body["messages"][1]["content"][0]["id"] == "call_ab_1"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_ab_1"


def test_v25_tools_synthesised_for_history() -> None:
    body = tr([u("q"), a(None, tool_calls=[call("c1")]), tool("c1"), u("and?")])
    assert body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "none"}


def test_v26_missing_result_gets_placeholder() -> None:
    body = tr([u("q"), a(None, tool_calls=[call("c1"), call("c2")]), tool("c1")])
    assert body["messages"][2]["content"][1] == {"type": "tool_result", "tool_use_id": "c2", "is_error": True, "content": "no result was provided"}
    assert bad([u("q"), a("no tools here"), tool("c9")]).param == "messages"


def test_v27_v28_tool_schemas() -> None:
    body = tr([u("q")], tools=[{"type": "function", "function": {"name": "f"}}])
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    schema = {"type": "object", "$defs": {"P": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/P"}}, "additionalProperties": False}
    body = tr([u("q")], tools=[{"type": "function", "function": {"name": "f", "description": "d", "parameters": schema, "strict": True}}])
    assert body["tools"] == [{"name": "f", "description": "d", "input_schema": schema}]
    assert tr([u("q")], tools=[{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}])["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert bad([u("q")], tools=[{"type": "custom", "custom": {"name": "x"}}]).param == "tools[0].type"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, {"type": "tool", "name": "f"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": False, "tool_choice": "none"}, {"type": "none"}),
        ({"parallel_tool_calls": False, "tool_choice": "required"}, {"type": "any", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": True}, None),
    ],
)
def test_v29_to_v34_tool_choice(fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    body = tr([u("q")], tools=WEATHER, **fields)
    assert body.get("tool_choice") == expected
    assert body["tools"][0]["name"] == "get_weather"


def test_legacy_functions_and_allowed_tools() -> None:
    body = tr([u("q")], functions=[{"name": "f", "parameters": {"type": "object"}}], function_call={"name": "f"})
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "tool", "name": "f"}
    two = [*WEATHER, {"type": "function", "function": {"name": "other"}}]
    body = tr([u("q")], tools=two, tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "other"}}]}})
    assert [t["name"] for t in body["tools"]] == ["other"]
    assert body["tool_choice"] == {"type": "any"}


def test_v35_to_v42_sampling_and_dropped_fields() -> None:
    assert tr([u("q")], max_tokens=100, max_completion_tokens=500)["max_tokens"] == 500
    assert tr([u("q")], temperature=1.5)["temperature"] == 1
    assert tr([u("q")], temperature=0.5)["temperature"] == 0.5
    assert tr([u("q")], stop="END")["stop_sequences"] == ["END"]
    assert tr([u("q")], stop=["\n", " ", "###"])["stop_sequences"] == ["###"]
    assert "stop_sequences" not in tr([u("q")], stop=["\n"])
    assert bad([u("q")], n=2).param == "n"
    assert "n" not in tr([u("q")], n=1)
    body = tr([u("q")], presence_penalty=0.5, frequency_penalty=0.1, seed=7, logit_bias={"1": 2}, logprobs=True, top_logprobs=2, store=True, service_tier="auto", metadata={"a": "b"}, modalities=["text"], prediction={}, audio={})
    assert body == {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": [text("q")]}]}
    assert "metadata" not in tr([u("q")], user="alice@example.com")
    assert tr([u("q")], user="u_123")["metadata"] == {"user_id": "u_123"}
    assert "metadata" not in tr([u("q")], user="x" * 257)


def test_v43_v44_reasoning_effort() -> None:
    body = tr([u("q")], reasoning_effort="medium", max_tokens=1000, temperature=0.2, top_k=5)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 3048
    assert "temperature" not in body and "top_k" not in body
    body = tr([u("q")], reasoning_effort="high", tool_choice="required", tools=WEATHER)
    assert "thinking" not in body
    assert body["tool_choice"] == {"type": "any"}
    assert "thinking" not in tr([u("q")], reasoning_effort="minimal")
    assert "thinking" not in tr([u("q")], reasoning_effort="none")
    assert tr([u("q")], reasoning_effort="low", max_tokens=8000)["max_tokens"] == 8000
    assert bad([u("q")], reasoning_effort="extreme").param == "reasoning_effort"
    assert "top_p" not in tr([u("q")], reasoning_effort="low", top_p=0.5)
    assert tr([u("q")], reasoning_effort="low", top_p=0.97)["top_p"] == 0.97


def test_v45_v46_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = tr([u("q")], response_format=rf)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in body
    plan = translate_request({"messages": [u("q")], "response_format": rf}, LEGACY)
    assert plan.json_tool
    assert plan.body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    assert plan.body["tools"][0]["input_schema"] == schema
    acc = MessageAccumulator(plan)
    msg = {"id": "msg_1", "model": LEGACY, "content": [{"type": "tool_use", "id": "toolu_1", "name": "json_tool_call", "input": {"a": 1}}], "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}}
    for kind, data in message_events(msg):
        acc.feed(kind, data)
    out = acc.completion(CREATED)
    assert out["choices"][0]["message"]["content"] == '{"a":1}'
    assert "tool_calls" not in out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "stop"
    body = tr([u("q")], response_format={"type": "json_object"})
    assert body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    assert body["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True, "properties": {}}


def test_v47_prefill_trailing_whitespace() -> None:
    assert tr([u("q"), a("The answer is ")])["messages"][1]["content"] == [text("The answer is")]


def test_v48_thinking_blocks_replayed_first() -> None:
    blocks = [{"type": "thinking", "thinking": "hm", "signature": "sig"}]
    body = tr([u("q"), a(None, tool_calls=[call("c1")], thinking_blocks=blocks), tool("c1")])
    assert body["messages"][1]["content"][0] == blocks[0]
    assert body["messages"][1]["content"][1]["type"] == "tool_use"


def test_v49_stream_flag_without_stream_options() -> None:
    plan = translate_request({"messages": [u("q")], "stream": True, "stream_options": {"include_usage": True}}, MODEL, stream=True)
    assert plan.body["stream"] is True
    assert "stream_options" not in plan.body


def test_only_system_messages_is_400() -> None:
    assert bad([{"role": "system", "content": "s"}]).param == "messages"


# --- Responses (vectors 50-58) --------------------------------------------------------------


def complete(content: list[dict[str, Any]], stop: str | None = "end_turn", usage: dict[str, Any] | None = None, plan: RequestPlan | None = None) -> dict[str, Any]:
    msg = {"id": "msg_01XYZ", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage or {"input_tokens": 5, "output_tokens": 3}}
    acc = MessageAccumulator(plan)
    for kind, data in message_events(msg):
        acc.feed(kind, data)
    return acc.completion(CREATED)


def test_b6_worked_example_exactly() -> None:
    out = complete(
        [{"type": "text", "text": "Checking the weather."}, {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}],
        "tool_use",
        {"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1200, "output_tokens": 31},
    )
    assert out == {
        "id": "chatcmpl-msg_01XYZ", "object": "chat.completion", "created": 1767225600, "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                     "message": {"role": "assistant", "content": "Checking the weather.", "refusal": None,
                                 "tool_calls": [{"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 1240, "completion_tokens": 31, "total_tokens": 1271,
                  "prompt_tokens_details": {"cached_tokens": 1200}, "completion_tokens_details": {"reasoning_tokens": 0}},
        "system_fingerprint": None,
    }


def test_v50_to_v53_content() -> None:
    msg = complete([text("Hi")])["choices"][0]
    assert (msg["message"]["content"], msg["finish_reason"], "tool_calls" in msg["message"]) == ("Hi", "stop", False)
    msg = complete([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}], "tool_use")["choices"][0]
    assert msg["message"]["content"] is None
    assert msg["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]
    assert msg["finish_reason"] == "tool_calls"
    assert complete([text("A"), {"type": "tool_use", "id": "t", "name": "f", "input": {}}, text("B")], "tool_use")["choices"][0]["message"]["content"] == "AB"
    assert complete([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_use")["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("pause_turn", "stop"), ("end_turn", "stop"), (None, "stop"), ("something_new", "stop")],
)
def test_v54_finish_reasons(stop: str | None, finish: str) -> None:
    assert complete([text("x")], stop)["choices"][0]["finish_reason"] == finish


def test_v55_v56_usage() -> None:
    usage = complete([text("x")], usage={"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300, "output_tokens": 50})["usage"]
    assert usage == {"prompt_tokens": 420, "completion_tokens": 50, "total_tokens": 470, "prompt_tokens_details": {"cached_tokens": 300, "cache_creation_tokens": 20}, "completion_tokens_details": {"reasoning_tokens": 0}}
    usage = complete([text("x")], usage={"input_tokens": 100, "cache_creation_input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 5})["usage"]
    assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (100, 0)


def test_v57_thinking_as_reasoning_content() -> None:
    plan = RequestPlan({}, thinking=True)
    message = complete([{"type": "thinking", "thinking": "plan…", "signature": "s1"}, text("ok")], plan=plan)["choices"][0]["message"]
    assert message["content"] == "ok"
    assert message["reasoning_content"] == "plan…"
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "plan…", "signature": "s1"}]


def test_v58_model_is_upstream_reported() -> None:
    assert complete([text("x")])["model"] == "claude-sonnet-4-5"


# --- Streaming (vectors 59-74) --------------------------------------------------------------


def ev(name: str, data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(name, json.dumps({"type": name, **data}))


def start(id_: str = "msg_01T", input_tokens: int = 12, output_tokens: int = 1, **usage: int) -> SSEEvent:
    return ev("message_start", {"message": {"id": id_, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, **usage}}})


def block_start(i: int, block: dict[str, Any]) -> SSEEvent:
    return ev("content_block_start", {"index": i, "content_block": block})


def delta(i: int, d: dict[str, Any]) -> SSEEvent:
    return ev("content_block_delta", {"index": i, "delta": d})


def stop(i: int) -> SSEEvent:
    return ev("content_block_stop", {"index": i})


def message_delta(reason: str, output_tokens: int) -> SSEEvent:
    return ev("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}})


MSG_STOP = ev("message_stop", {})
PING = ev("ping", {})


def translate(events: list[SSEEvent], include_usage: bool = False, plan: RequestPlan | None = None, finish: bool = True) -> list[Any]:
    c = Call(body={}, route=Route("anthropic", MODEL, "claude"), stream=True, include_usage=include_usage, created=CREATED)
    tr_ = AnthropicStreamTranslator(c, plan or RequestPlan({}))
    out: list[bytes] = []
    for e in events:
        out.extend(tr_.feed(e))
    if finish:
        out.extend(tr_.finish())
    parsed = []
    for chunk in out:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        payload = chunk[6:-2]
        parsed.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return parsed


C4 = [start(), block_start(0, {"type": "text", "text": ""}), PING, delta(0, {"type": "text_delta", "text": "Hello"}), delta(0, {"type": "text_delta", "text": " there!"}), stop(0), message_delta("end_turn", 6), MSG_STOP]
ENV = {"id": "chatcmpl-msg_01T", "object": "chat.completion.chunk", "created": 1767225600, "model": "claude-sonnet-4-5", "system_fingerprint": None}


def ch(d: dict[str, Any], finish: str | None = None, usage: bool = True) -> dict[str, Any]:
    out = {**ENV, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}
    if usage:
        out["usage"] = None
    return out


def test_v59_c4_exact_lines() -> None:
    assert translate(C4, include_usage=True) == [
        ch({"role": "assistant", "content": ""}),
        ch({"content": "Hello"}),
        ch({"content": " there!"}),
        ch({}, "stop"),
        {**ENV, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}},
        "[DONE]",
    ]


def test_v60_to_v63_c5_tool_stream() -> None:
    events = [
        start("msg_01W", 472, 2), block_start(0, {"type": "text", "text": ""}), delta(0, {"type": "text_delta", "text": "Let me check."}), stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_01Q", "name": "get_weather", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": ""}),
        delta(1, {"type": "input_json_delta", "partial_json": "{\"location\":"}),
        delta(1, {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\"}"}),
        stop(1), message_delta("tool_use", 89), MSG_STOP,
    ]
    env = {**ENV, "id": "chatcmpl-msg_01W"}

    def c(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**env, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}

    assert translate(events) == [
        c({"role": "assistant", "content": ""}),
        c({"content": "Let me check."}),
        c({"tool_calls": [{"index": 0, "id": "toolu_01Q", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
        c({}, "tool_calls"),
        "[DONE]",
    ]


def test_v62_v63_tool_without_deltas_and_two_tools() -> None:
    events = [start(), block_start(0, {"type": "tool_use", "id": "t1", "name": "a", "input": {}}), stop(0),
              block_start(1, {"type": "tool_use", "id": "t2", "name": "b", "input": {}}), delta(1, {"type": "input_json_delta", "partial_json": "{}"}), stop(1),
              message_delta("tool_use", 9), MSG_STOP]
    out = translate(events)
    frags = [c["choices"][0]["delta"]["tool_calls"][0] for c in out[1:-2]]
    assert frags == [
        {"index": 0, "id": "t1", "type": "function", "function": {"name": "a", "arguments": ""}},
        {"index": 0, "function": {"arguments": "{}"}},
        {"index": 1, "id": "t2", "type": "function", "function": {"name": "b", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    assert all(c["choices"][0]["index"] == 0 for c in out[:-1])


def test_v64_v70_pings_and_unknown_events_ignored() -> None:
    noisy = [C4[0], PING, C4[1], PING, ev("content_block_foo", {"index": 0}), *C4[2:]]
    assert translate(noisy) == translate(C4)


def test_v65_cumulative_usage() -> None:
    out = translate([start(output_tokens=1), *C4[1:6], message_delta("end_turn", 15), MSG_STOP], include_usage=True)
    assert out[-2]["usage"]["completion_tokens"] == 15
    out = translate([start(input_tokens=3, cache_read_input_tokens=7), *C4[1:]], include_usage=True)
    assert out[-2]["usage"]["prompt_tokens"] == 10
    assert out[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] == 7


def test_v66_v67_usage_key_rules() -> None:
    without = translate(C4)
    assert all("usage" not in c for c in without[:-1])
    assert not any(c != "[DONE]" and c["choices"] == [] for c in without)
    with_usage = translate(C4, include_usage=True)
    assert all(c["usage"] is None for c in with_usage[:-2])
    assert with_usage[-2]["choices"] == [] and with_usage[-1] == "[DONE]"


def test_v68_error_event_after_deltas() -> None:
    c = Call(body={}, route=Route("anthropic", MODEL, "claude"), stream=True, include_usage=True, created=CREATED)
    tr_ = AnthropicStreamTranslator(c, RequestPlan({}))
    emitted = [x for e in C4[:5] for x in tr_.feed(e)]
    assert len(emitted) == 3
    with pytest.raises(GatewayError) as info:
        tr_.feed(ev("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert (info.value.status, info.value.type, info.value.code) == (503, "service_unavailable_error", "server_is_overloaded")


def test_v69_eof_before_message_stop() -> None:
    with pytest.raises(StreamInterrupted) as info:
        translate(C4[:5])
    assert info.value.code == "upstream_stream_interrupted"


def test_v72_thinking_only_when_opted_in() -> None:
    events = [start(), block_start(0, {"type": "thinking", "thinking": "", "signature": ""}), delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
              delta(0, {"type": "signature_delta", "signature": "sig"}), stop(0), *C4[1:]]
    plain = translate(events)
    assert plain == translate(C4)
    opted = translate(events, plan=RequestPlan({}, thinking=True))
    assert opted[1]["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    assert opted[2]["choices"][0]["delta"] == {"thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]}
    assert all("sig" not in (c["choices"][0]["delta"].get("content") or "") for c in opted[:-1])


def test_v73_server_tool_blocks_are_not_client_tool_calls() -> None:
    events = [start(), block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
              delta(0, {"type": "input_json_delta", "partial_json": "{\"query\":\"x\"}"}), stop(0),
              block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}), stop(1), *C4[1:]]
    out = translate(events)
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in out if c != "[DONE]" and c["choices"])
    assert out[-2]["choices"][0]["finish_reason"] == "stop"


def test_v74_one_id_and_created() -> None:
    out = [c for c in translate(C4, include_usage=True) if c != "[DONE]"]
    assert {c["id"] for c in out} == {"chatcmpl-msg_01T"}
    assert {c["created"] for c in out} == {CREATED}


def test_stream_and_non_stream_agree() -> None:
    """The same message streamed and not gives the same content, tool calls, finish and usage."""
    from gatewaylib.sse import SSEParser
    from tests.fakes.anthropic import stream_events

    message = {"id": "msg_9", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use", "stop_sequence": None,
               "content": [text("Let me look."), {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"q": "ü", "n": [1, 2]}}],
               "usage": {"input_tokens": 9, "cache_creation_input_tokens": 1, "cache_read_input_tokens": 2, "output_tokens": 12}}
    whole = complete(message["content"], "tool_use", message["usage"])
    parser = SSEParser()
    events = [e for chunk in stream_events(message) for e in parser.feed(chunk)]
    chunks = translate(events, include_usage=True)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2])
    args = "".join(t["function"]["arguments"] for c in chunks[:-2] for t in c["choices"][0]["delta"].get("tool_calls", []))
    assert content == whole["choices"][0]["message"]["content"]
    assert json.loads(args) == json.loads(whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert chunks[-3]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-2]["usage"] == whole["usage"]


# --- Errors (vectors 75-80) -----------------------------------------------------------------


def err(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> GatewayError:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}).encode()
    return anthropic_error(status, headers or {}, body)


def test_v75_400_keeps_message_no_param() -> None:
    e = err(400, "invalid_request_error", "messages.1.content: bad")
    assert e.status == 400
    assert e.payload() == {"error": {"message": "messages.1.content: bad", "type": "invalid_request_error", "param": None, "code": None}}
    assert err(400, "invalid_request_error", "prompt is too long: 300000 tokens").code == "context_length_exceeded"


def test_v76_529_to_503() -> None:
    e = err(529, "overloaded_error", "Overloaded", {"retry-after": "3"})
    assert (e.status, e.type, e.code) == (503, "service_unavailable_error", "server_is_overloaded")
    assert e.response_headers()["retry-after"] == "3"


def test_v77_429_headers() -> None:
    e = err(429, "rate_limit_error", "slow down", {"retry-after": "20", "anthropic-ratelimit-requests-remaining": "0"})
    assert (e.status, e.type, e.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    headers = e.response_headers()
    assert headers["retry-after"] == "20"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in headers
    assert err(429, "rate_limit_error", "spend cap").response_headers()["x-should-retry"] == "false"


def test_v78_own_key_rejected_is_502() -> None:
    e = err(401, "authentication_error", "invalid x-api-key sk-ant-abcdefgh1234")
    assert (e.status, e.type, e.code) == (502, "server_error", "upstream_auth_failed")
    assert "sk-ant" not in e.message
    assert err(403, "permission_error", "no").status == 502


def test_v79_413() -> None:
    e = err(413, "request_too_large", "too big")
    assert (e.status, e.type, e.code) == (413, "invalid_request_error", "request_too_large")


def test_v80_html_is_502_json() -> None:
    e = anthropic_error(502, {"content-type": "text/html"}, b"<html><body>Bad gateway</body></html>")
    assert e.payload() == {"error": {"message": "anthropic returned a non-JSON error (HTTP 502)", "type": "server_error", "param": None, "code": "bad_gateway"}}


def test_other_error_statuses() -> None:
    assert (err(402, "billing_error", "pay").status, err(402, "billing_error", "pay").code) == (402, "insufficient_quota")
    assert err(402, "billing_error", "pay").response_headers()["x-should-retry"] == "false"
    assert err(404, "not_found_error", "model: claude-x").code == "model_not_found"
    assert err(409, "conflict_error", "c").code == "conflict"
    assert (err(500, "api_error", "boom").status, err(500, "api_error", "boom").code) == (502, "upstream_error")
