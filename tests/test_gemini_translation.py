"""Gemini translation (translation.md section F, vectors 93-97), without any network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatewaylib.errors import GatewayError, InvalidRequest, StreamInterrupted
from gatewaylib.providers.base import Call
from gatewaylib.providers.gemini import (
    GeminiAccumulator,
    GeminiStreamTranslator,
    finish_reason,
    gemini_error_response,
    usage_from_metadata,
)
from gatewaylib.providers.gemini_request import split_tool_id, translate_request
from gatewaylib.routing import Route
from gatewaylib.sse import SSEEvent

MODEL = "gemini-2.5-flash"
CREATED = 1767225600
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def tr(messages: list[dict[str, Any]], model: str = MODEL, **fields: Any) -> dict[str, Any]:
    return translate_request({"model": "alias", "messages": messages, **fields}, model).body


def u(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def call(id_: str, name: str = "get_weather", args: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def bad(messages: list[dict[str, Any]], **fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        tr(messages, **fields)
    assert info.value.status == 400
    return info.value


# -- requests (F.2) --------------------------------------------------------------------------


def test_system_hoisting_roles_and_merging() -> None:
    body = tr([
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        u("Hi"),
        u([{"type": "text", "text": "there"}]),
        {"role": "assistant", "content": "Hello"},
    ])
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be terse.\nUse metric."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
        ],
    }


def test_only_system_is_a_400() -> None:
    assert bad([{"role": "system", "content": "x"}]).param == "messages"


def test_images_inline_and_file_uris() -> None:
    body = tr([u([
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
    ])])
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
    ]
    plan = translate_request({"model": "m", "messages": [u([{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}])]}, MODEL)
    [download] = plan.downloads
    assert (download.url, download.param) == ("https://x.test/cat.jpg", "messages[0].content[1].image_url")
    assert plan.body["contents"][0]["parts"][1] is download.part  # filled in once downloaded
    assert bad([u([{"type": "image_url", "image_url": {"url": "ftp://x.test/cat.jpg"}}])]).param == "messages[0].content[0].image_url"


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2a00:1450:4007:80e::200e", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("192.168.0.1", False), ("169.254.169.254", False), ("::1", False), ("::ffff:127.0.0.1", False),
    ("fd00::1", False), ("fe80::1%eth0", False), ("100.64.0.1", False), ("0.0.0.0", False),
])
def test_only_public_addresses_are_downloaded(address: str, public: bool) -> None:
    from gatewaylib.fetch import _public

    assert _public(address) is public


def test_v93_tool_choice_modes() -> None:
    def config(choice: Any) -> Any:
        return tr([u("Hi")], tools=WEATHER, tool_choice=choice)["toolConfig"]["functionCallingConfig"]

    assert config("required") == {"mode": "ANY"}
    assert config({"type": "function", "function": {"name": "get_weather"}}) == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    assert config("auto") == {"mode": "AUTO"}
    assert config("none") == {"mode": "NONE"}
    body = tr([u("Hi")], tools=WEATHER)
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parametersJsonSchema": WEATHER[0]["function"]["parameters"]}]}]
    assert "toolConfig" not in body


def test_function_names_gemini_rejects_are_a_400() -> None:
    tools = [{"type": "function", "function": {"name": "9lives"}}]
    assert bad([u("Hi")], tools=tools).param == "tools[0].function.name"
    assert bad([u("Hi")], tools=[{"type": "custom", "custom": {"name": "x"}}]).param == "tools[0].type"


def test_v95_tool_message_becomes_function_response() -> None:
    body = tr([
        u("Weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call("call_9")]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
    ], tools=WEATHER)
    assert body["contents"][1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}
    assert body["contents"][2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}


def test_parallel_results_in_one_content_and_json_results_kept() -> None:
    body = tr([
        u("Weather?"),
        {"role": "assistant", "tool_calls": [call("c1"), call("c2", "get_time", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        u("Thanks"),
    ], tools=WEATHER)
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
        {"text": "Thanks"},
    ]}


def test_missing_result_filled_and_unknown_id_rejected() -> None:
    body = tr([u("Weather?"), {"role": "assistant", "tool_calls": [call("c1"), call("c2")]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}])
    responses = body["contents"][2]["parts"]
    assert len(responses) == 2 and responses[1] == {"functionResponse": {"name": "get_weather", "response": {"error": "no result was provided"}}}
    assert bad([u("Hi"), {"role": "tool", "tool_call_id": "nope", "content": "x"}]).param == "messages[1].tool_call_id"
    assert bad([u("Hi"), {"role": "assistant", "tool_calls": [call("c1", args="{oops")]}]).param == "messages[1].tool_calls[0].function.arguments"


def test_history_calls_without_tools_declared_with_mode_none() -> None:
    body = tr([u("Weather?"), {"role": "assistant", "tool_calls": [call("c1")]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}])
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_thought_signature_travels_in_the_tool_call_id() -> None:
    assert split_tool_id("call_abc__thought__c2lnMQ==") == ("call_abc", "c2lnMQ==")
    assert split_tool_id("call_abc") == ("call_abc", None)
    body = tr([u("Weather?"), {"role": "assistant", "tool_calls": [call("call_abc__thought__c2lnMQ==")]}, {"role": "tool", "tool_call_id": "call_abc__thought__c2lnMQ==", "content": "x"}], tools=WEATHER)
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnMQ=="}]


def test_generation_config() -> None:
    body = tr([u("Hi")], temperature=1.5, top_p=0.9, max_completion_tokens=100, max_tokens=5, stop=["a", " ", "b", "c", "d", "e", "f"], n=2, seed=7,
              presence_penalty=0.5, frequency_penalty=0.25, user="bob", logprobs=True, top_logprobs=3, parallel_tool_calls=False)
    assert body["generationConfig"] == {
        "temperature": 1.5, "topP": 0.9, "presencePenalty": 0.5, "frequencyPenalty": 0.25, "seed": 7,
        "maxOutputTokens": 100, "candidateCount": 2, "stopSequences": ["a", "b", "c", "d", "e"],
        "responseLogprobs": True, "logprobs": 3,
    }
    assert set(body) == {"contents", "generationConfig"}


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert tr([u("Hi")], response_format={"type": "json_object"})["generationConfig"] == {"responseMimeType": "application/json"}
    assert tr([u("Hi")], response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert bad([u("Hi")], response_format={"type": "xml"}).param == "response_format.type"


def test_reasoning_effort_thinking_config() -> None:
    assert tr([u("Hi")], reasoning_effort="medium")["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}
    assert tr([u("Hi")], reasoning_effort="none")["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
    assert "generationConfig" not in tr([u("Hi")], "gemini-2.5-pro", reasoning_effort="none")
    assert tr([u("Hi")], "gemini-3-pro-preview", reasoning_effort="low")["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "low", "includeThoughts": True}}
    assert tr([u("Hi")], "gemini-3-pro-preview", reasoning_effort="high")["generationConfig"] == {"thinkingConfig": {"thinkingLevel": "high", "includeThoughts": True}}
    assert bad([u("Hi")], reasoning_effort="huge").param == "reasoning_effort"


# -- responses (F.3) -------------------------------------------------------------------------


def response(parts: list[dict[str, Any]], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash-001", "responseId": "r1", **extra}


def complete(record: dict[str, Any]) -> dict[str, Any]:
    acc = GeminiAccumulator()
    acc.feed(record)
    return acc.completion(CREATED)


def test_text_and_thoughts() -> None:
    out = complete(response([{"text": "Let me think", "thought": True}, {"text": "Hi"}, {"text": " there"}]))
    assert out["id"] == "chatcmpl-r1" and out["model"] == "gemini-2.5-flash-001" and out["created"] == CREATED
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hi there", "refusal": None, "reasoning_content": "Let me think"}, "logprobs": None, "finish_reason": "stop"}]


def test_v94_function_call_with_stop_is_tool_calls() -> None:
    out = complete(response([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [tool_call] = choice["message"]["tool_calls"]
    assert tool_call["id"].startswith("call_") and len(tool_call["id"]) == 29
    assert tool_call["type"] == "function"
    assert tool_call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}


def test_function_call_keeps_its_id_and_signature() -> None:
    out = complete(response([{"functionCall": {"id": "fc1", "name": "f", "args": {}}, "thoughtSignature": "sig"}]))
    assert out["choices"][0]["message"]["tool_calls"][0]["id"] == "fc1__thought__sig"


@pytest.mark.parametrize(("gemini", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("IMAGE_SAFETY", "content_filter"), ("OTHER", "stop"),
    ("MALFORMED_FUNCTION_CALL", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"), (None, "stop"),
])
def test_finish_reasons(gemini: str | None, expected: str) -> None:
    assert finish_reason(gemini, False) == expected


def test_v96_usage() -> None:
    usage = usage_from_metadata({"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "cachedContentTokenCount": 40, "totalTokenCount": 150})
    assert usage.to_openai() == {
        "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert usage_from_metadata({"promptTokenCount": 10, "toolUsePromptTokenCount": 5, "candidatesTokenCount": 2}).prompt_tokens == 15


def test_v97_blocked_prompt() -> None:
    out = complete({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "m"})
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"]["prompt_tokens"] == 8


def test_multiple_candidates() -> None:
    record = {"candidates": [
        {"content": {"role": "model", "parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
    ]}
    out = complete(record)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [(0, "A", "stop"), (1, "B", "length")]


# -- streams (F.4) ---------------------------------------------------------------------------


def stream(records: list[dict[str, Any]], include_usage: bool = True) -> list[Any]:
    c = Call(body={}, route=Route("gemini", MODEL, "gem"), stream=True, include_usage=include_usage, created=CREATED)
    translator = GeminiStreamTranslator(c)
    out: list[bytes] = []
    for record in records:
        out += translator.feed(SSEEvent(None, json.dumps(record)))
    out += translator.finish()
    return [json.loads(b[6:]) if b != b"data: [DONE]\n\n" else "[DONE]" for b in out]


def test_stream_text_tools_finish_usage_done() -> None:
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
    events = stream([
        response([{"text": "Hel"}], None),
        response([{"text": "lo"}, {"functionCall": {"name": "f", "args": {"a": 1}}}], None),
        response([{"functionCall": {"name": "g", "args": {}}}], "STOP", usageMetadata=usage),
    ])
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1:3] == [{"content": "Hel"}, {"content": "lo"}]
    assert deltas[3]["tool_calls"][0]["index"] == 0 and deltas[3]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert deltas[4]["tool_calls"][0]["index"] == 1 and deltas[4]["tool_calls"][0]["function"]["name"] == "g"
    assert deltas[5] == {} and events[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 8
    assert events[-1] == "[DONE]"
    assert len({e["id"] for e in events[:-1]}) == 1 and events[0]["id"] == "chatcmpl-r1"
    assert all(e["usage"] is None for e in events[:-2])


def test_stream_without_include_usage_and_blocked() -> None:
    events = stream([response([{"text": "x"}], "STOP")], include_usage=False)
    assert events[-1] == "[DONE]" and "usage" not in events[-2]
    events = stream([{"promptFeedback": {"blockReason": "SAFETY"}}], include_usage=False)
    assert events[-2]["choices"][0]["finish_reason"] == "content_filter" and events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_stream_that_ends_without_finish_reason_is_interrupted() -> None:
    with pytest.raises(StreamInterrupted):
        stream([response([{"text": "x"}], None)])


def test_stream_error_record_raises_mapped_error() -> None:
    c = Call(body={}, route=Route("gemini", MODEL, "gem"), stream=True, include_usage=False, created=CREATED)
    translator = GeminiStreamTranslator(c)
    translator.feed(SSEEvent(None, json.dumps(response([{"text": "x"}], None))))
    with pytest.raises(GatewayError) as info:
        translator.feed(SSEEvent(None, json.dumps({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})))
    assert (info.value.status, info.value.code) == (503, "server_is_overloaded")


# -- errors (F.5) ----------------------------------------------------------------------------


def gerr(status: int, name: str, message: str = "boom", **extra: Any) -> GatewayError:
    body = json.dumps({"error": {"code": status, "message": message, "status": name, **extra}}).encode()
    return gemini_error_response(status, {}, body)


@pytest.mark.parametrize(("status", "name", "expected"), [
    (400, "INVALID_ARGUMENT", (400, "invalid_request_error", None)),
    (400, "FAILED_PRECONDITION", (400, "invalid_request_error", None)),
    (429, "RESOURCE_EXHAUSTED", (429, "rate_limit_error", "rate_limit_exceeded")),
    (500, "INTERNAL", (502, "server_error", "upstream_error")),
    (503, "UNAVAILABLE", (503, "service_unavailable_error", "server_is_overloaded")),
    (504, "DEADLINE_EXCEEDED", (504, "server_error", "timeout")),
    (403, "PERMISSION_DENIED", (502, "server_error", "upstream_auth_failed")),
])
def test_google_status_names(status: int, name: str, expected: tuple[Any, ...]) -> None:
    err = gerr(status, name)
    assert (err.status, err.type, err.code) == expected


def test_bad_key_400_is_an_auth_failure_and_body_hidden() -> None:
    err = gerr(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details=[{"reason": "API_KEY_INVALID"}])
    assert (err.status, err.code) == (502, "upstream_auth_failed") and "API key not valid" not in err.message


def test_rate_limit_retry_delay_becomes_retry_after() -> None:
    err = gerr(429, "RESOURCE_EXHAUSTED", details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "16.5s"}])
    assert err.response_headers()["retry-after"] == "17"


def test_model_not_found_and_non_json() -> None:
    err = gerr(404, "NOT_FOUND", "models/gemini-x is not found for API version v1beta")
    assert (err.status, err.code) == (404, "model_not_found")
    err = gemini_error_response(502, {}, b"<html>bad gateway</html>")
    assert (err.status, err.code) == (502, "bad_gateway")
