"""End to end: the official openai SDK -> litegate -> fake Anthropic (which validates like the
real Messages API, so a translation bug fails here with the fake's 400)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import pytest_twisted

from tests.conftest import BACKEND_KEY, Gateway, in_thread, openai_client
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import MODEL_REPORTED, FakeAnthropic, error_reply, stream_events
from tests.fakes.server import Reply, sse_named

MODEL = "claude-sonnet"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
QUESTION = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Paris?"}]


def stream_list(gateway: Gateway, **kwargs: Any) -> Any:
    client = openai_client(gateway)
    return in_thread(lambda: list(client.chat.completions.create(model=MODEL, stream=True, **kwargs)))


@pytest_twisted.ensureDeferred
async def test_non_stream_text(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """A plain chat becomes a Messages call and comes back as a chat.completion."""
    client = openai_client(gateway)
    result = await in_thread(client.chat.completions.create, model=MODEL, messages=[*QUESTION[:1], {"role": "user", "content": "Hi there"}])
    assert result.id == "chatcmpl-msg_01FAKE"
    assert result.model == MODEL_REPORTED
    assert result.choices[0].message.content == "Hello from fake Claude!"
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (15, 4, 19)
    sent = fake_anthropic.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert BACKEND_KEY.encode() not in sent.body
    assert sent.json == {
        "model": "claude-sonnet-4-5",
        "system": "You are terse.",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
    }


@pytest_twisted.ensureDeferred
async def test_stream_text_with_and_without_usage(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """Streams give a role chunk, text deltas, one finish chunk, and usage only when asked."""
    chunks = await stream_list(gateway, messages=[*QUESTION[:1], {"role": "user", "content": "Hi"}])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from fake Claude!"
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert all(c.usage is None for c in chunks)
    assert "stream_options" not in fake_anthropic.last.json and fake_anthropic.last.json["stream"] is True

    chunks = await stream_list(gateway, messages=[{"role": "user", "content": "Hi"}], stream_options={"include_usage": True})
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 4)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1


@pytest_twisted.ensureDeferred
async def test_tool_round_trip_non_stream(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """call -> tool result -> answer works turn by turn; the fake checks pairing and tools."""
    client = openai_client(gateway)
    first = await in_thread(client.chat.completions.create, model=MODEL, messages=QUESTION, tools=TOOLS)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    assert message.tool_calls[0].id == "toolu_01Q"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    follow_up = [
        *QUESTION,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny, 21C"},
    ]
    second = await in_thread(client.chat.completions.create, model=MODEL, messages=follow_up, tools=TOOLS)
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    sent = fake_anthropic.last.json["messages"]
    assert sent[1]["content"][1] == {"type": "tool_use", "id": "toolu_01Q", "name": "get_weather", "input": {"city": "Paris"}}
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01Q", "content": "sunny, 21C"}]}


@pytest_twisted.ensureDeferred
async def test_tool_round_trip_stream(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """The same conversation streamed: fragments reassemble into the call, then the answer."""
    chunks = await stream_list(gateway, messages=QUESTION, tools=TOOLS)
    fragments = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id == "toolu_01Q" and fragments[0].function.name == "get_weather"
    assert all(f.id is None and f.function.name is None for f in fragments[1:])
    arguments = "".join(f.function.arguments for f in fragments)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assistant = {
        "role": "assistant",
        "content": text,
        "tool_calls": [{"id": "toolu_01Q", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}],
    }
    follow_up = [*QUESTION, assistant, {"role": "tool", "tool_call_id": "toolu_01Q", "content": "sunny"}]
    chunks = await stream_list(gateway, messages=follow_up, tools=TOOLS)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "It is sunny in Paris."


@pytest_twisted.ensureDeferred
async def test_image_message(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """Data-URL and http images become base64 and url image blocks."""
    client = openai_client(gateway)
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg", "detail": "low"}},
    ]
    result = await in_thread(client.chat.completions.create, model=MODEL, messages=[{"role": "user", "content": content}])
    assert result.choices[0].message.content == "Hello from fake Claude!"
    assert fake_anthropic.last.json["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}},
    ]


@pytest_twisted.ensureDeferred
async def test_reasoning_effort_and_stop_sequences(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """reasoning_effort turns thinking on (valid for the fake's checks) and is returned as
    reasoning_content; stop strings are cleaned; temperature is clamped."""
    client = openai_client(gateway)
    result = await in_thread(
        client.chat.completions.create, model=MODEL, messages=[{"role": "user", "content": "Think"}],
        reasoning_effort="low", max_tokens=500, temperature=0.3, stop=["\n", "END"],
    )
    sent = fake_anthropic.last.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] == 1524
    assert sent["stop_sequences"] == ["END"]
    assert "temperature" not in sent
    extra = result.choices[0].message.model_extra
    assert extra["reasoning_content"] == "The user wants weather."
    assert extra["thinking_blocks"] == [{"type": "thinking", "thinking": "The user wants weather.", "signature": "sig_fake_123"}]
    await in_thread(client.chat.completions.create, model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=1.7)
    assert fake_anthropic.last.json["temperature"] == 1


@pytest_twisted.ensureDeferred
async def test_unhonourable_request_is_400_without_upstream_call(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """n=2 cannot be translated: 400 with param n, and Anthropic is never called."""
    client = openai_client(gateway)
    with pytest.raises(openai.BadRequestError) as info:
        await in_thread(client.chat.completions.create, model=MODEL, messages=QUESTION, n=2)
    assert info.value.body["param"] == "n"
    assert fake_anthropic.requests == []


@pytest.mark.parametrize(
    ("reply", "exc", "status", "code", "headers"),
    [
        (error_reply(429, "rate_limit_error", "Rate limited", {"retry-after": "20"}), openai.RateLimitError, 429, "rate_limit_exceeded", {"retry-after": "20"}),
        (error_reply(529, "overloaded_error", "Overloaded", {"retry-after": "2"}), openai.InternalServerError, 503, "server_is_overloaded", {"retry-after": "2"}),
        (error_reply(401, "authentication_error", "invalid x-api-key"), openai.InternalServerError, 502, "upstream_auth_failed", {"x-should-retry": "false"}),
        (error_reply(400, "invalid_request_error", "messages.0: bad"), openai.BadRequestError, 400, None, {"x-should-retry": "false"}),
        (error_reply(413, "request_too_large", "Request exceeds the maximum size"), openai.APIStatusError, 413, "request_too_large", {}),
        (Reply(502, {"content-type": "text/html"}, b"<html>Bad Gateway</html>"), openai.InternalServerError, 502, "bad_gateway", {}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_error_mapping(gateway: Gateway, fake_anthropic: FakeAnthropic, reply: Reply, exc: type, status: int, code: str | None, headers: dict[str, str]) -> None:
    """Each Anthropic error reaches the SDK with the documented status, code and headers."""
    for streaming in (False, True):
        fake_anthropic.queue(reply)
        client = openai_client(gateway)
        with pytest.raises(exc) as info:
            if streaming:
                await stream_list(gateway, messages=QUESTION)
            else:
                await in_thread(client.chat.completions.create, model=MODEL, messages=QUESTION)
        assert info.value.status_code == status
        assert info.value.body["code"] == code
        assert "<html>" not in json.dumps(info.value.body)
        assert "invalid x-api-key" not in json.dumps(info.value.body)
        for name, value in headers.items():
            assert info.value.response.headers[name] == value


def _message(text: str) -> dict[str, Any]:
    return {"id": "msg_01ERR", "type": "message", "role": "assistant", "model": MODEL_REPORTED, "stop_reason": "end_turn", "stop_sequence": None,
            "content": [{"type": "text", "text": text}], "usage": {"input_tokens": 3, "output_tokens": 4}}


@pytest_twisted.ensureDeferred
async def test_mid_stream_error_event_makes_sdk_raise(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """An error event after text deltas: the client gets the deltas then an error; the SDK raises."""
    events = stream_events(_message("one two three"))[:5]
    events.append(sse_named("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=events))
    client = openai_client(gateway)
    received: list[str] = []

    def run() -> None:
        for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as info:
        await in_thread(run)
    assert "".join(received) == "one two"
    assert info.value.body == {"message": "Overloaded", "type": "service_unavailable_error", "param": None, "code": "server_is_overloaded"}


@pytest_twisted.ensureDeferred
async def test_eof_before_message_stop_makes_sdk_raise(gateway: Gateway, fake_anthropic: FakeAnthropic, http) -> None:
    """A stream cut before message_stop ends with an error event and no [DONE]."""
    events = stream_events(_message("one two three"))[:6]
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=events))
    response = await http.post(
        gateway.base_url + "/chat/completions",
        json.dumps({"model": MODEL, "messages": QUESTION, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {BACKEND_KEY}"},
    )
    body = (await response.content()).decode()
    assert response.code == 200
    assert "[DONE]" not in body
    assert body.rstrip("\n").splitlines()[-1] == 'data: {"error":{"message":"the anthropic stream ended before message_stop","type":"server_error","param":null,"code":"upstream_stream_interrupted"}}'
    assert '"finish_reason":"stop"' not in body


@pytest_twisted.ensureDeferred
async def test_first_event_overloaded_is_503_json(gateway: Gateway, fake_anthropic: FakeAnthropic, http) -> None:
    """A 200 stream whose first event is an error becomes an ordinary 503 JSON error."""
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=[sse_named("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]))
    response = await http.post(
        gateway.base_url + "/chat/completions",
        json.dumps({"model": MODEL, "messages": QUESTION, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {BACKEND_KEY}"},
    )
    assert response.code == 503
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(await response.content())["error"]["code"] == "server_is_overloaded"


@pytest_twisted.ensureDeferred
async def test_json_output_modes(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """json_object uses the forced-tool mode and comes back as JSON content with finish stop."""
    client = openai_client(gateway)
    result = await in_thread(
        client.chat.completions.create, model=MODEL, messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert result.choices[0].message.content == '{"answer":42}'
    assert result.choices[0].message.tool_calls is None
    assert result.choices[0].finish_reason == "stop"
    chunks = await stream_list(gateway, messages=[{"role": "user", "content": "JSON"}], response_format={"type": "json_object"})
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks)) == {"answer": 42}
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest_twisted.ensureDeferred
async def test_events_split_across_tcp_reads(gateway: Gateway, fake_anthropic: FakeAnthropic) -> None:
    """Payloads cut mid-JSON and mid-character, sent as separate writes, are parsed correctly."""
    whole = b"".join(stream_events(_message("héllo wörld again")))
    cuts = [7, 40, 41, whole.index("ö".encode()) + 1, len(whole) - 3]
    pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    fake_anthropic.queue(Reply(200, {"content-type": "text/event-stream"}, events=pieces, delay=0.02))
    chunks = await stream_list(gateway, messages=QUESTION)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "héllo wörld again"
    assert chunks[-1].choices[0].finish_reason == "stop"
