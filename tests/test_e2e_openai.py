"""End to end through real sockets: the official openai SDK -> litegate -> fake OpenAI."""

from __future__ import annotations

import json

import openai
import pytest
import pytest_twisted

from tests.conftest import BACKEND_KEY, CHATBOT_KEY, Gateway, in_thread, openai_client
from tests.fakes.openai import API_KEY as OPENAI_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello please"},
]


@pytest_twisted.ensureDeferred
async def test_non_stream_chat_returns_upstream_completion(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A non-streaming chat returns the upstream's completion, its model and usage untouched."""
    client = openai_client(gateway)
    result = await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
    assert result.id == "chatcmpl-fake123"
    assert result.model == "gpt-4o-2024-08-06"
    assert result.choices[0].message.content == "Hello from fake OpenAI!"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    ) == (11, 5, 16)
    assert fake_openai.last.json["model"] == "gpt-4o"
    raw = await in_thread(
        client.chat.completions.with_raw_response.create, model="gpt-4o", messages=MESSAGES
    )
    assert raw.headers["content-length"] == str(len(raw.content))
    assert "transfer-encoding" not in raw.headers


@pytest_twisted.ensureDeferred
async def test_stream_chat_relays_chunks(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A stream arrives chunk by chunk, ending at [DONE], with the upstream's chunks as sent."""
    client = openai_client(gateway)

    def run() -> list[object]:
        return list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))

    chunks = await in_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake OpenAI!"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert len(chunks) == 7  # role, five content pieces, finish: the injected usage chunk is gone
    assert all(c.usage is None for c in chunks)


@pytest_twisted.ensureDeferred
async def test_stream_with_include_usage_keeps_usage_chunk(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A client that asked for usage gets OpenAI's final usage chunk with exact counts."""
    client = openai_client(gateway)

    def run() -> list[object]:
        return list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )

    chunks = await in_thread(run)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 11
    assert chunks[-1].usage.completion_tokens == 5
    assert fake_openai.last.json["stream_options"] == {"include_usage": True}


@pytest_twisted.ensureDeferred
async def test_stream_is_byte_identical_to_upstream_without_injected_usage(
    gateway: Gateway, fake_openai: FakeOpenAI, http
) -> None:
    """The gateway asks upstream for usage but the client's bytes equal an unmodified stream."""
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    response = await http.post(
        gateway.base_url + "/chat/completions",
        json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {BACKEND_KEY}", "Content-Type": "application/json"},
    )
    got = await response.content()
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["text/event-stream; charset=utf-8"]
    assert response.headers.getRawHeaders("cache-control") == ["no-cache"]
    assert fake_openai.last.json["stream_options"] == {"include_usage": True}
    expected = fake_openai.default_reply(
        type(fake_openai.last)(
            "POST",
            "/v1/chat/completions",
            {"authorization": f"Bearer {OPENAI_KEY}"},
            json.dumps({**body, "model": "gpt-4o"}).encode(),
        )
    )
    assert expected.events is not None
    assert got == b"".join(expected.events)


@pytest_twisted.ensureDeferred
async def test_stream_tool_call_fragments(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Tool-call fragments pass through and reassemble into one call with valid JSON arguments."""
    client = openai_client(gateway)
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]

    def run() -> list[object]:
        return list(
            client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, tools=tools, stream=True
            )
        )

    chunks = await in_thread(run)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_fake_1" and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest_twisted.ensureDeferred
async def test_forwarded_body_keeps_every_field_and_substitutes_keys(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """Every field reaches the upstream unchanged except `model`; the provider key replaces the
    caller's, which is never forwarded."""
    client = openai_client(gateway)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "$defs": {"x": {}},
                },
                "strict": True,
            },
        }
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "r", "schema": {"type": "object"}},
    }
    await in_thread(
        client.chat.completions.create,
        model="fast",
        messages=MESSAGES,
        tools=tools,
        tool_choice="none",
        response_format=response_format,
        temperature=0.3,
        top_p=0.9,
        seed=42,
        user="u-1",
        logit_bias={"50256": -100},
        extra_body={"custom_vendor_field": {"a": [1, 2]}},
    )
    sent = fake_openai.last.json
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "tools": tools,
        "tool_choice": "none",
        "response_format": response_format,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 42,
        "user": "u-1",
        "logit_bias": {"50256": -100},
        "custom_vendor_field": {"a": [1, 2]},
    }
    headers = fake_openai.last.headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert BACKEND_KEY not in json.dumps(headers)
    assert BACKEND_KEY.encode() not in fake_openai.last.body
    assert fake_openai.last.path == "/v1/chat/completions"


@pytest_twisted.ensureDeferred
async def test_prefix_routed_model_is_forwarded_verbatim(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A name matched by a prefix rule is sent upstream as the client wrote it."""
    client = openai_client(gateway)
    await in_thread(client.chat.completions.create, model="gpt-4.1-nano", messages=MESSAGES)
    assert fake_openai.last.json["model"] == "gpt-4.1-nano"


@pytest_twisted.ensureDeferred
async def test_models_lists_only_what_the_key_may_use(gateway: Gateway) -> None:
    """/v1/models shows each key exactly the aliases it may use, in OpenAI's list shape."""
    backend = await in_thread(lambda: [m.id for m in openai_client(gateway).models.list()])
    chatbot = await in_thread(
        lambda: [m.id for m in openai_client(gateway, CHATBOT_KEY).models.list()]
    )
    assert backend == ["gpt-4o", "fast", "claude-sonnet", "demo"]
    assert chatbot == ["gpt-4o", "claude-sonnet", "demo"]
    page = await in_thread(lambda: openai_client(gateway).models.list())
    first = page.data[0]
    assert (first.object, first.owned_by) == ("model", "openai")
    assert isinstance(first.created, int)


@pytest_twisted.ensureDeferred
async def test_unknown_key_is_401(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An unknown key gets 401 invalid_api_key and nothing reaches the upstream."""
    client = openai_client(gateway, "sk-not-a-real-key-000000000")
    with pytest.raises(openai.AuthenticationError) as info:
        await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    assert info.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        await in_thread(lambda: client.models.list())
    assert fake_openai.requests == []


@pytest_twisted.ensureDeferred
async def test_disallowed_model_is_403_without_upstream_call(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A model outside the key's allowed_models gets 403 model_not_allowed, no upstream call."""
    client = openai_client(gateway, CHATBOT_KEY)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await in_thread(client.chat.completions.create, model="fast", messages=MESSAGES)
    assert info.value.body == {
        "message": "This API key is not allowed to use the model 'fast'.",
        "type": "permission_error",
        "param": None,
        "code": "model_not_allowed",
    }
    assert fake_openai.requests == []


@pytest_twisted.ensureDeferred
async def test_unroutable_model_is_404(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A name matched by no alias and no prefix rule gets 404 model_not_found."""
    client = openai_client(gateway)
    with pytest.raises(openai.NotFoundError) as info:
        await in_thread(client.chat.completions.create, model="llama-3", messages=MESSAGES)
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"
    assert fake_openai.requests == []


@pytest_twisted.ensureDeferred
async def test_upstream_429_is_relayed_with_retry_headers(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An upstream 429 stays a 429 with its retry and rate-limit headers, not a 502."""
    fake_openai.queue(
        Reply(
            429,
            {
                "content-type": "application/json",
                "retry-after": "7",
                "x-ratelimit-remaining-requests": "0",
            },
            b'{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}',
        )
    )
    client = openai_client(gateway)
    with pytest.raises(openai.RateLimitError) as info:
        await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.body["message"] == "Rate limit reached"


@pytest_twisted.ensureDeferred
async def test_upstream_400_keeps_status_and_param(
    gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An upstream 400 is relayed as 400 with its message, type, param and code."""
    fake_openai.queue(
        Reply(
            400,
            {"content-type": "application/json"},
            b'{"error":{"message":"Invalid value for temperature","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}',
        )
    )
    client = openai_client(gateway)
    with pytest.raises(openai.BadRequestError) as info:
        await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
    assert info.value.body == {
        "message": "Invalid value for temperature",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    }


@pytest_twisted.ensureDeferred
async def test_provider_rejecting_our_key_is_502_without_its_body(
    fake_openai: FakeOpenAI, make_config
) -> None:
    """If the upstream refuses the gateway's own key the client gets 502, never the upstream body."""
    from tests.conftest import start_gateway, stop_gateway

    gw = await start_gateway(
        make_config(fake_openai.base_url, T_OPENAI_KEY="sk-wrong-provider-key-123")
    )
    try:
        client = openai_client(gw)
        with pytest.raises(openai.InternalServerError) as info:
            await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
        assert info.value.status_code == 502
        assert info.value.body["code"] == "upstream_auth_failed"
        assert "Incorrect API key" not in json.dumps(info.value.body)
        assert info.value.response.headers["x-should-retry"] == "false"
    finally:
        await stop_gateway(gw)


@pytest_twisted.ensureDeferred
async def test_upstream_named_by_hostname(fake_openai: FakeOpenAI, make_config) -> None:
    """An upstream given by name (`localhost`) is resolved and reached, streams included; IP
    addresses take a shorter path, which every other test uses."""
    from tests.conftest import start_gateway, stop_gateway

    gw = await start_gateway(make_config(fake_openai.base_url.replace("127.0.0.1", "localhost")))
    try:
        client = openai_client(gw)
        result = await in_thread(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
        assert result.choices[0].message.content == "Hello from fake OpenAI!"
        chunks = await in_thread(
            lambda: list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake OpenAI!"
        assert fake_openai.last.headers["host"].startswith("localhost:")
    finally:
        await stop_gateway(gw)


@pytest_twisted.ensureDeferred
async def test_echo_demo_stream_and_non_stream(gateway: Gateway) -> None:
    """The echo provider answers through the same pipeline, with honest word counts."""
    client = openai_client(gateway, CHATBOT_KEY)
    messages = [{"role": "user", "content": "one two three four"}]
    result = await in_thread(client.chat.completions.create, model="demo", messages=messages)
    assert result.choices[0].message.content == "one two three four"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 4)

    def run() -> list[object]:
        return list(
            client.chat.completions.create(
                model="demo", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )

    chunks = await in_thread(run)
    assert [c.choices[0].delta.content for c in chunks[1:5]] == ["one", " two", " three", " four"]
    assert chunks[5].choices[0].finish_reason == "stop"
    assert chunks[6].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1
