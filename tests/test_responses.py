"""The Responses API: mapping vectors 81-92 and end-to-end runs with the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import pytest_twisted

from gatewaylib.errors import GatewayError, InvalidRequest
from gatewaylib.responses import ResponsesEventDriver, build_response, parse_responses_request
from gatewaylib.sse import SSEParser
from tests.conftest import BACKEND_KEY, Gateway, in_thread, openai_client
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply


def req(**body: Any) -> Any:
    return parse_responses_request(json.dumps({"model": "m", **body}).encode())


def chat(**body: Any) -> dict[str, Any]:
    return req(**body).chat


# --- requests ------------------------------------------------------------------------------


def test_v81_instructions_and_string_input() -> None:
    assert chat(input="Hi", instructions="Be brief")["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hi"},
    ]


def test_v82_items_keep_their_order() -> None:
    items = [
        {"role": "user", "content": "q"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"role": "user", "content": "and?"},
    ]
    assert chat(input=items)["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": "and?"},
    ]


def test_v83_calls_nested_in_assistant_content_and_merged() -> None:
    items = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}, {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]},
    ]
    assert chat(input=items)["messages"] == [
        {"role": "assistant", "content": "ok", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    ]
    items = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "let me"}]},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call_output", "call_id": "b", "output": [{"type": "input_text", "text": "2"}]},
    ]
    messages = chat(input=items)["messages"]
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool"]
    assert [c["id"] for c in messages[0]["tool_calls"]] == ["a", "b"]
    assert messages[2]["content"] == [{"type": "text", "text": "2"}]


def test_v84_to_v87_fields() -> None:
    params = {"type": "object", "properties": {"x": {"type": "string"}}}
    body = chat(input="q", tools=[{"type": "function", "name": "f", "parameters": params}], tool_choice={"type": "function", "name": "f"},
                text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}},
                max_output_tokens=256, temperature=0.2, top_p=0.9, parallel_tool_calls=False, reasoning={"effort": "low"}, user="u1",
                store=False, metadata={"k": "v"}, include=["x"], truncation="auto")
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": True}},
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "user": "u1",
    }
    assert chat(input="q", stream=True)["stream_options"] == {"include_usage": True}
    image = {"role": "user", "content": [{"type": "input_text", "text": "see"}, {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"}]}
    assert chat(input=[image])["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_x"}, "previous_response_id"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
        ({}, "input"),
        ({"input": 5}, "input"),
    ],
)
def test_v92_and_unsupported_fields_are_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        req(**body)
    assert info.value.param == param


# --- non-streaming response ------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x", "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}}


def test_v88_message_then_function_call_items() -> None:
    r = req(input="q", metadata={"a": "b"})
    out = build_response(r, completion({"content": "Let me check", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}, "tool_calls"))
    assert out["status"] == "completed" and out["object"] == "response" and out["id"].startswith("resp_")
    assert [i["type"] for i in out["output"]] == ["message", "function_call"]
    assert out["output"][0]["content"] == [{"type": "output_text", "text": "Let me check", "annotations": [], "logprobs": []}]
    assert {k: out["output"][1][k] for k in ("call_id", "name", "arguments", "status")} == {"call_id": "call_1", "name": "f", "arguments": "{\"x\":1}", "status": "completed"}
    assert out["usage"] == {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0}, "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 18}
    assert out["metadata"] == {"a": "b"} and out["store"] is True and out["model"] == "gpt-x"
    assert "output_text" not in out


def test_v89_length_is_incomplete() -> None:
    out = build_response(req(input="q"), completion({"content": "partial"}, "length"))
    assert (out["status"], out["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


# --- streaming events ------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x", "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


USAGE = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}


def events(driver: ResponsesEventDriver, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    raw = b"".join(b"".join(driver.chunk(c)) for c in chunks) + b"".join(driver.done())
    parsed = SSEParser().feed(raw)
    for event in parsed:
        assert json.loads(event.data)["type"] == event.event
    return [json.loads(e.data) for e in parsed]


def test_v90_text_stream_exact_sequence() -> None:
    evs = events(ResponsesEventDriver(req(input="q")), [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}), chunk({"content": " there!"}), chunk({}, "stop"), chunk(usage=USAGE),
    ])
    assert [(e["sequence_number"], e["type"]) for e in evs] == list(enumerate([
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]))
    item_id = evs[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert {e["item_id"] for e in evs[3:8]} == {item_id} and evs[8]["item"]["id"] == item_id
    assert evs[6]["text"] == "Hello there!"
    done = evs[9]["response"]
    assert done["status"] == "completed"
    assert done["output"] == [{"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hello there!", "annotations": [], "logprobs": []}]}]
    assert done["usage"]["input_tokens"] == 12 and done["usage"]["output_tokens"] == 6
    assert evs[0]["response"]["id"] == done["id"]


def test_v91_reasoning_item_closes_before_message() -> None:
    evs = events(ResponsesEventDriver(req(input="q")), [
        chunk({"reasoning_content": "think"}), chunk({"reasoning_content": "ing"}), chunk({"content": "ok"}), chunk({}, "stop"), chunk(usage=USAGE),
    ])
    kinds = [e["type"] for e in evs]
    assert kinds.index("response.output_item.done") < [i for i, e in enumerate(evs) if e["type"] == "response.output_item.added"][1]
    assert evs[2]["item"]["type"] == "reasoning" and evs[2]["output_index"] == 0
    message_added = [e for e in evs if e["type"] == "response.output_item.added"][1]
    assert message_added["item"]["type"] == "message" and message_added["output_index"] == 1
    assert evs[-1]["response"]["output"][0] == {"type": "reasoning", "id": evs[2]["item"]["id"], "summary": [{"type": "summary_text", "text": "thinking"}]}


def test_function_call_stream_sequence() -> None:
    evs = events(ResponsesEventDriver(req(input="q")), [
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "toolu_01Q", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}}]}),
        chunk({}, "tool_calls"), chunk(usage=USAGE),
    ])
    assert [e["type"] for e in evs] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]
    assert evs[2]["item"] == {"type": "function_call", "id": evs[2]["item"]["id"], "call_id": "toolu_01Q", "name": "get_weather", "arguments": "", "status": "in_progress"}
    assert evs[5]["arguments"] == "{\"location\": \"Paris\"}" and evs[5]["name"] == "get_weather"
    assert [e["sequence_number"] for e in evs] == list(range(8))


def test_upstream_failure_sends_error_then_failed() -> None:
    driver = ResponsesEventDriver(req(input="q"))
    first = [json.loads(e.data) for e in SSEParser().feed(b"".join(driver.chunk(chunk({"content": "a"}))))]
    assert [e["type"] for e in first][:2] == ["response.created", "response.in_progress"]
    failed = [json.loads(e.data) for e in SSEParser().feed(b"".join(driver.fail(GatewayError("boom", code="upstream_stream_interrupted"))))]
    assert [e["type"] for e in failed] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in failed] == [first[-1]["sequence_number"] + 1, first[-1]["sequence_number"] + 2]
    assert failed[0]["code"] == "upstream_stream_interrupted" and failed[0]["message"] == "boom"
    assert failed[1]["response"]["status"] == "failed"
    assert failed[1]["response"]["error"] == {"code": "upstream_stream_interrupted", "message": "boom"}
    assert driver.ended and driver.done() == []


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
@pytest_twisted.ensureDeferred
async def test_sdk_non_stream_and_stream_agree(gateway: Gateway, model: str) -> None:
    """client.responses.create works on both providers; the streamed final response equals the
    non-streamed one (ids aside)."""
    client = openai_client(gateway)
    whole = await in_thread(client.responses.create, model=model, input="Hi there", instructions="Be brief")
    assert whole.status == "completed"
    expected_text = "Hello from fake OpenAI!" if model == "gpt-4o" else "Hello from fake Claude!"
    assert whole.output_text == expected_text
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0

    def run() -> Any:
        with client.responses.stream(model=model, input="Hi there", instructions="Be brief") as stream:
            seen = [event.type for event in stream]
            return seen, stream.get_final_response()

    seen, final = await in_thread(run)
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert final.output_text == whole.output_text
    assert final.usage.model_dump() == whole.usage.model_dump()
    def strip(response: Any) -> list[dict[str, Any]]:
        """Items without their ids (minted per response) and the stream helper's `parsed`."""
        items = [item.model_dump() for item in response.output]
        for item in items:
            item.pop("id")
            for part in item.get("content") or []:
                part.pop("parsed", None)
        return items

    assert strip(final) == strip(whole)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
@pytest_twisted.ensureDeferred
async def test_sdk_function_call_round_trip(gateway: Gateway, model: str) -> None:
    """A function call, its function_call_output, then the answer, on both providers."""
    client = openai_client(gateway)
    tools = [{"type": "function", "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = await in_thread(client.responses.create, model=model, input="Weather in Paris?", tools=tools)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    follow_up = [{"role": "user", "content": "Weather in Paris?"}, *[item.model_dump(exclude_none=True) for item in first.output],
                 {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}]
    second = await in_thread(client.responses.create, model=model, input=follow_up, tools=tools)
    expected = "Hello from fake OpenAI!" if model == "gpt-4o" else "It is sunny in Paris."
    assert second.output_text == expected


@pytest_twisted.ensureDeferred
async def test_stream_failure_reaches_the_sdk(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """An upstream failure mid-stream ends with error and response.failed events."""
    from tests.fakes.anthropic import stream_events

    message = {"id": "m", "type": "message", "role": "assistant", "model": "x", "stop_reason": "end_turn", "stop_sequence": None,
               "content": [{"type": "text", "text": "a b c"}], "usage": {"input_tokens": 1, "output_tokens": 3}}
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=stream_events(message)[:5], drop_after=5, delay=0.002))
    client = openai_client(gateway)

    def run() -> list[str]:
        kinds = []
        try:
            for event in client.responses.create(model="claude-sonnet", input="hi", stream=True):
                kinds.append(event.type)
        except openai.APIError as e:
            kinds.append("raised:" + type(e).__name__)
        return kinds

    kinds = await in_thread(run)
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.failed", "raised:APIError")
    assert "error" in kinds or kinds[-1].startswith("raised")


@pytest_twisted.ensureDeferred
async def test_get_stored_response_is_404(gateway: Gateway, http: Any) -> None:
    """Nothing is stored: GET /v1/responses/{id} is a 404 in the error shape."""
    response = await http.get(gateway.base_url + "/responses/resp_123", headers={"Authorization": f"Bearer {BACKEND_KEY}"})
    body = json.loads(await response.content())
    assert response.code == 404
    assert body["error"]["param"] == "response_id" and body["error"]["type"] == "invalid_request_error"


@pytest_twisted.ensureDeferred
async def test_responses_are_metered(gateway: Gateway, fake_openai: FakeOpenAI, http: Any) -> None:
    """Responses requests are counted with tokens, and usage is always requested upstream."""
    client = openai_client(gateway)

    def run() -> Any:
        with client.responses.stream(model="gpt-4o", input="Hi there") as stream:
            for _ in stream:
                pass
            return stream.get_final_response()

    final = await in_thread(run)
    assert fake_openai.last.json["stream_options"] == {"include_usage": True}
    assert final.usage.input_tokens == 5
    response = await http.get(gateway.url + "/metrics")
    text = (await response.content()).decode()
    assert 'llm_tokens_total{direction="prompt",model="gpt-4o",provider="openai",virtual_key="my-backend"} 5.0' in text
