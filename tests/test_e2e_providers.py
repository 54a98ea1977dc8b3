"""End to end with the openai SDK: Gemini (native API), Mistral, Groq and a local
OpenAI-compatible server without auth, each behind its own fake that validates like the real
API. Metrics are scraped to check tokens are metered wherever each provider reports them."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_twisted

from gatewaylib.config import parse_config
from tests.conftest import (
    BACKEND_KEY,
    Gateway,
    in_thread,
    openai_client,
    start_gateway,
    stop_gateway,
)
from tests.fakes import gemini as gem
from tests.fakes import mistral as mis
from tests.fakes.gemini import FakeGemini
from tests.fakes.mistral import FakeMistral
from tests.fakes.openai import FakeOpenAI, error_body
from tests.fakes.server import FakeServer, Recorded, Reply, sse_data
from tests.test_metrics import scrape, value

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
QUESTION = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Paris?"}]
GROQ_KEY = "gsk_fake_groq_provider_key_5e8f"


class FakeGroq(FakeOpenAI):
    """Groq's OpenAI-compatible API: 400 for the fields it does not support, n must be 1, and
    stream usage reported in `x_groq.usage` on the last chunk."""

    api_key = GROQ_KEY

    def default_reply(self, recorded: Recorded) -> Reply:
        body = json.loads(recorded.body)
        for name in ("logprobs", "logit_bias", "top_logprobs"):
            if name in body:
                return Reply(400, {"content-type": "application/json"}, error_body(f"'{name}' : is not supported with this model", "invalid_request_error", None))
        if any("name" in m for m in body.get("messages", [])):
            return Reply(400, {"content-type": "application/json"}, error_body("'messages.0' : for 'role:user' the following must be satisfied[('messages.0.name' : property 'name' is unsupported)]", "invalid_request_error", None))
        if body.get("n", 1) != 1:
            return Reply(400, {"content-type": "application/json"}, error_body("'n' : number must be at most 1", "invalid_request_error", None))
        return super().default_reply(recorded)


class FakeLocal(FakeOpenAI):
    """A local server without auth that rejects `stream_options` (as some do) and reports
    stream usage on its finish chunk."""

    api_key = None

    def default_reply(self, recorded: Recorded) -> Reply:
        body = json.loads(recorded.body)
        if "stream_options" in body:
            return Reply(400, {"content-type": "application/json"}, error_body("Unrecognized request argument supplied: stream_options", "invalid_request_error", None))
        reply = super().default_reply(recorded)
        if body.get("stream") and reply.events:
            finish = json.loads(reply.events[-2][6:])
            finish["usage"] = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
            reply.events[-2] = sse_data(finish)
        return reply


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class ImageServer(FakeServer):
    """Serves /cat.png; /page is HTML, anything else 404."""

    def default_reply(self, recorded: Recorded) -> Reply:
        if recorded.path == "/cat.png":
            return Reply(200, {"content-type": "image/png"}, PNG)
        if recorded.path == "/page":
            return Reply(200, {"content-type": "text/html"}, b"<html></html>")
        return Reply(404, {"content-type": "text/plain"}, b"not found")


def providers_yaml(gemini: str, mistral: str, groq: str, local: str) -> str:
    return textwrap.dedent(
        f"""
        listen: "127.0.0.1:0"
        providers:
          gemini:     {{ api_key: "{gem.API_KEY}", base_url: "{gemini}" }}
          mistral:    {{ api_key: "{mis.API_KEY}", base_url: "{mistral}" }}
          groq:       {{ api_key: "{GROQ_KEY}", base_url: "{groq}" }}
          local-vllm: {{ type: openai, base_url: "{local}", api_key: "", stream_usage: false }}
          gemini-lan: {{ type: gemini, api_key: "{gem.API_KEY}", base_url: "{gemini}", allow_private_urls: true }}
        models:
          "gemini-flash": {{ provider: "gemini", model: "gemini-2.5-flash" }}
          "gemini-lan": {{ provider: "gemini-lan", model: "gemini-2.5-flash" }}
          "mistral-small": {{ provider: "mistral", model: "mistral-small-latest" }}
          "llama-groq": {{ provider: "groq", model: "llama-3.3-70b-versatile" }}
          "local": {{ provider: "local-vllm", model: "Qwen/Qwen3-8B" }}
        routing:
          - {{ prefix: "gemini-", provider: "gemini" }}
        api_keys:
          - {{ key: "{BACKEND_KEY}", app: "my-backend", allowed_models: ["*"] }}
        """
    )


@pytest_twisted.async_yield_fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    servers = {"gemini": FakeGemini(), "mistral": FakeMistral(), "groq": FakeGroq(), "local": FakeLocal(), "images": ImageServer()}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        await server.stop()


@pytest_twisted.async_yield_fixture
async def gw(fakes: dict[str, Any]) -> AsyncIterator[Gateway]:
    text = providers_yaml(*(fakes[k].base_url for k in ("gemini", "mistral", "groq", "local")))
    gateway = await start_gateway(parse_config(text, "providers.yaml", {}))
    yield gateway
    await stop_gateway(gateway)


def create(gateway: Gateway, **kwargs: Any) -> Any:
    return in_thread(openai_client(gateway).chat.completions.create, **kwargs)


def stream_list(gateway: Gateway, **kwargs: Any) -> Any:
    client = openai_client(gateway)
    return in_thread(lambda: list(client.chat.completions.create(stream=True, **kwargs)))


# -- Gemini --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_gemini_chat_non_stream(gw: Gateway, fakes: dict[str, Any]) -> None:
    result = await create(gw, model="gemini-flash", messages=QUESTION)
    assert result.id == "chatcmpl-" + gem.RESPONSE_ID
    assert result.model == gem.MODEL_VERSION
    assert result.choices[0].message.content == "Hello from fake Gemini!"
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (8, 12, 20)
    sent = fakes["gemini"].last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == gem.API_KEY
    assert "authorization" not in sent.headers and BACKEND_KEY.encode() not in sent.body
    assert sent.json == {"systemInstruction": {"parts": [{"text": "You are terse."}]}, "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]}


@pytest_twisted.ensureDeferred
async def test_gemini_stream_with_usage_and_reasoning(gw: Gateway, fakes: dict[str, Any], http: Any) -> None:
    chunks = await stream_list(gw, model="gemini-flash", messages=QUESTION, stream_options={"include_usage": True}, reasoning_effort="low")
    assert fakes["gemini"].last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Gemini!"
    reasoning = [getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices]
    assert gem.THOUGHT in reasoning
    assert [c.choices[0].finish_reason for c in chunks if c.choices].count("stop") == 1
    assert chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (8, 23)
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 7
    assert len({c.id for c in chunks}) == 1
    _, samples = await scrape(http, gw)
    labels = {"virtual_key": "my-backend", "provider": "gemini", "model": "gemini-flash"}
    assert value(samples, "llm_tokens_total", direction="completion", **labels) == 23
    assert value(samples, "llm_cost_dollars_total", **labels) == pytest.approx((8 * 0.30 + 23 * 2.50) / 1e6)
    assert value(samples, "llm_requests_total", status="200", **labels) == 1


@pytest_twisted.ensureDeferred
async def test_gemini_tool_round_trip(gw: Gateway, fakes: dict[str, Any]) -> None:
    first = await create(gw, model="gemini-flash", messages=QUESTION, tools=TOOLS)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    [tool_call] = message.tool_calls
    assert tool_call.id.startswith("call_") and tool_call.id.endswith("__thought__c2lnMQ==")
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    follow_up = [*QUESTION, message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny, 21C"}]
    chunks = await stream_list(gw, model="gemini-flash", messages=follow_up, tools=TOOLS)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == gem.ANSWER
    contents = fakes["gemini"].last.json["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="}]}
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny, 21C"}}}]}
    # the streamed call: one whole fragment with id, name and complete arguments
    chunks = await stream_list(gw, model="gemini-flash", messages=QUESTION, tools=TOOLS)
    fragments = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert len(fragments) == 1 and fragments[0].index == 0 and fragments[0].function.arguments == '{"city":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest_twisted.ensureDeferred
async def test_gemini_responses_api(gw: Gateway, fakes: dict[str, Any]) -> None:
    client = openai_client(gw)
    response = await in_thread(client.responses.create, model="gemini-flash", input="Hi", instructions="Be brief.")
    assert response.status == "completed" and response.output_text == "Hello from fake Gemini!"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 12)
    assert fakes["gemini"].last.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    events = await in_thread(lambda: list(client.responses.create(model="gemini-flash", input="Hi", stream=True)))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello from fake Gemini!"
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest_twisted.ensureDeferred
async def test_gemini_errors(gw: Gateway, fakes: dict[str, Any]) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        await create(gw, model="gemini-bogus-1", messages=QUESTION)
    assert not_found.value.code == "model_not_found"
    fakes["gemini"].queue(gem.google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]))
    with pytest.raises(openai.RateLimitError) as limited:
        await create(gw, model="gemini-flash", messages=QUESTION)
    assert limited.value.response.headers["retry-after"] == "3"
    fakes["gemini"].api_key = "AIza-rotated"
    with pytest.raises(openai.InternalServerError) as auth:
        await create(gw, model="gemini-flash", messages=QUESTION)
    assert auth.value.status_code == 502 and auth.value.code == "upstream_auth_failed"
    assert "API key not valid" not in auth.value.response.text
    fakes["gemini"].api_key = gem.API_KEY
    with pytest.raises(openai.BadRequestError) as bad:
        await create(gw, model="gemini-flash", messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}])
    assert bad.value.body["param"] == "messages[0].content[0].image_url"
    assert "private" in bad.value.message and len(fakes["gemini"].requests) == 3  # never sent


@pytest_twisted.ensureDeferred
async def test_gemini_mid_stream_error_record(gw: Gateway, fakes: dict[str, Any]) -> None:
    fakes["gemini"].queue(Reply(200, {"content-type": "text/event-stream"}, events=[
        gem.record([{"text": "Hel"}]),
        b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n',
    ]))
    with pytest.raises(openai.APIError) as info:
        await stream_list(gw, model="gemini-flash", messages=QUESTION)
    assert "overloaded" in info.value.message


@pytest_twisted.ensureDeferred
async def test_gemini_downloads_http_images(gw: Gateway, fakes: dict[str, Any]) -> None:
    """Gemini cannot fetch arbitrary URLs: litegate downloads and inlines them, but only from
    public addresses unless the provider allows private ones."""
    images = fakes["images"]

    def ask(model: str, path: str) -> Any:
        content = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": images.origin + path}}]
        return create(gw, model=model, messages=[{"role": "user", "content": content}])

    with pytest.raises(openai.BadRequestError) as refused:
        await ask("gemini-flash", "/cat.png")
    assert refused.value.body["param"] == "messages[0].content[1].image_url" and images.requests == []
    result = await ask("gemini-lan", "/cat.png")
    assert result.choices[0].message.content == "Hello from fake Gemini!"
    import base64

    assert fakes["gemini"].last.json["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    for path, reason in (("/missing.png", "HTTP 404"), ("/page", "not an image")):
        with pytest.raises(openai.BadRequestError) as bad:
            await ask("gemini-lan", path)
        assert reason in bad.value.message and bad.value.body["param"] == "messages[0].content[1].image_url"


# -- Mistral -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mistral_chat_and_stream_usage_chunk(gw: Gateway, fakes: dict[str, Any], http: Any) -> None:
    result = await create(gw, model="mistral-small", messages=QUESTION, seed=3, user="u1", logprobs=False, max_completion_tokens=1)
    assert result.choices[0].message.content == "Hello from fake Mistral!"
    assert result.choices[0].finish_reason == "length"  # model_length
    sent = fakes["mistral"].last.json
    assert sent["random_seed"] == 3 and sent["max_tokens"] == 1 and "seed" not in sent and "user" not in sent
    chunks = await stream_list(gw, model="mistral-small", messages=QUESTION, stream_options={"include_usage": True})
    assert "stream_options" not in fakes["mistral"].last.json
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Mistral!"
    assert chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (14, 6)
    assert all(c.usage is None for c in chunks[:-1])
    chunks = await stream_list(gw, model="mistral-small", messages=QUESTION)
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    _, samples = await scrape(http, gw)
    labels = {"virtual_key": "my-backend", "provider": "mistral", "model": "mistral-small"}
    assert value(samples, "llm_tokens_total", direction="prompt", **labels) == 42
    assert value(samples, "llm_tokens_total", direction="completion", **labels) == 18
    assert value(samples, "llm_cost_dollars_total", **labels) == pytest.approx((42 * 0.10 + 18 * 0.30) / 1e6)


@pytest_twisted.ensureDeferred
async def test_mistral_tool_round_trip_with_foreign_ids(gw: Gateway, fakes: dict[str, Any]) -> None:
    first = await create(gw, model="mistral-small", messages=QUESTION, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.id == mis.TOOL_ID and first.choices[0].finish_reason == "tool_calls"
    foreign = {"role": "assistant", "content": None, "tool_calls": [{"id": "call_PTLP8xhu3uwZk4l3", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    history = [*QUESTION, foreign, {"role": "tool", "tool_call_id": "call_PTLP8xhu3uwZk4l3", "content": "sunny"}]
    second = await create(gw, model="mistral-small", messages=history, tools=TOOLS)
    assert second.choices[0].message.content == mis.ANSWER
    sent = fakes["mistral"].last.json["messages"]
    assert sent[2]["tool_calls"][0]["id"] == sent[3]["tool_call_id"] and len(sent[3]["tool_call_id"]) == 9
    chunks = await stream_list(gw, model="mistral-small", messages=QUESTION, tools=TOOLS)
    fragments = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id == mis.TOOL_ID and fragments[0].index == 0


@pytest_twisted.ensureDeferred
async def test_mistral_rejections_are_mapped(gw: Gateway, fakes: dict[str, Any]) -> None:
    fakes["mistral"].queue(mis.extra_forbidden(["messages", 0, "user", "name"], "bob"))
    with pytest.raises(openai.BadRequestError) as bad:
        await create(gw, model="mistral-small", messages=QUESTION)
    assert bad.value.body["param"] == "messages.0.user.name"
    fakes["mistral"].queue(mis.mistral_error(429, "Requests rate limit exceeded", "rate_limited", "1300"))
    with pytest.raises(openai.RateLimitError):
        await create(gw, model="mistral-small", messages=QUESTION)


# -- Groq and a local server ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_groq_strips_unsupported_fields(gw: Gateway, fakes: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "Hi there", "name": "bob"}]
    result = await create(gw, model="llama-groq", messages=messages, logprobs=True, top_logprobs=2, logit_bias={"50256": -100})
    assert result.choices[0].message.content == "Hello from fake OpenAI!"
    sent = fakes["groq"].last
    assert sent.headers["authorization"] == f"Bearer {GROQ_KEY}"
    assert sent.json == {"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "Hi there"}]}
    with pytest.raises(openai.BadRequestError) as bad:
        await create(gw, model="llama-groq", messages=messages, n=2)
    assert bad.value.body["param"] == "n"


@pytest_twisted.ensureDeferred
async def test_local_server_without_auth_or_stream_options(gw: Gateway, fakes: dict[str, Any], http: Any) -> None:
    result = await create(gw, model="local", messages=[{"role": "user", "content": "Hi"}])
    assert result.choices[0].message.content == "Hello from fake OpenAI!"
    assert "authorization" not in fakes["local"].last.headers
    assert fakes["local"].last.json["model"] == "Qwen/Qwen3-8B"
    chunks = await stream_list(gw, model="local", messages=[{"role": "user", "content": "Hi"}], stream_options={"include_usage": True})
    assert "stream_options" not in fakes["local"].last.json
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 12
    chunks = await stream_list(gw, model="local", messages=[{"role": "user", "content": "Hi"}])
    _, samples = await scrape(http, gw)
    labels = {"virtual_key": "my-backend", "provider": "local-vllm", "model": "local"}
    assert value(samples, "llm_tokens_total", direction="completion", **labels) == 5 + 5 + 5
