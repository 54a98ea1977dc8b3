"""A fake OpenAI Chat Completions server speaking the real wire format.

Replies: a fixed text ("Hello from fake OpenAI!") or, when tools are offered and the last message
is from the user, a `get_weather` tool call. Streams are `chat.completion.chunk` SSE events ending
in `data: [DONE]`, with the separate usage chunk only when `stream_options.include_usage` is true.
Token counts are deterministic so tests can assert exact numbers.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply, sse_data

API_KEY = "sk-fake-openai-provider-key-77f3a9"
TEXT_PARTS = ["Hello", " from", " fake", " OpenAI", "!"]
TOOL_ARGS_PARTS = ['{"city"', ':"Paris"', "}"]
CREATED = 1767225600


def prompt_tokens(messages: list[Any]) -> int:
    """3 per message plus one per word of text content."""
    total = 0
    for message in messages:
        total += 3
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(len(p.get("text", "").split()) for p in content if isinstance(p, dict))
    return total


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


def _validate(body: Any) -> tuple[str, str] | None:
    """The structural checks OpenAI makes, as (param, message) of its 400."""
    if not isinstance(body, dict):
        return "", "The body must be a JSON object."
    if not isinstance(body.get("model"), str):
        return "model", "Invalid type for 'model': expected a string."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "Invalid 'messages': expected a non-empty array."
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant", "tool", "function"):
            return f"messages[{i}].role", f"Invalid value for 'messages[{i}].role'."
        content = message.get("content")
        if content is None and message["role"] in ("assistant",):
            continue
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages[{i}].content", f"Invalid type for 'messages[{i}].content'."
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "image_url", "input_audio", "file", "refusal"):
                return f"messages[{i}].content[{j}]", "Invalid content part."
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                return f"messages[{i}].content[{j}].text", f"Invalid type for 'messages[{i}].content[{j}].text': expected a string."
    return None


class FakeOpenAI(FakeServer):
    #: None: a server without authentication (a local vLLM, Ollama...).
    api_key: str | None = API_KEY

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def default_reply(self, recorded: Recorded) -> Reply:
        if recorded.path != "/v1/chat/completions" or recorded.method != "POST":
            return Reply(
                404,
                {"content-type": "application/json"},
                error_body("Not found", "invalid_request_error", None),
            )
        if self.api_key is not None and recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(
                401,
                {"content-type": "application/json"},
                error_body(
                    "Incorrect API key provided: sk-bad...key0.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return Reply(
                400,
                {"content-type": "application/json"},
                error_body(
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                ),
            )
        problem = _validate(body)
        if problem is not None:
            param, message = problem
            return Reply(400, {"content-type": "application/json"}, error_body(message, "invalid_request_error", "invalid_value", param))
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return Reply(
                400,
                {"content-type": "application/json"},
                error_body(
                    "Missing required parameter: 'messages'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                    "messages",
                ),
            )
        if str(body.get("model", "")).startswith("gpt-bogus"):
            return Reply(
                404,
                {"content-type": "application/json"},
                error_body(f"The model `{body['model']}` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
            )
        wants_tool = (
            bool(body.get("tools"))
            and body.get("tool_choice") != "none"
            and body["messages"][-1].get("role") == "user"
        )
        model = body["model"] + "-2024-08-06"
        usage = {
            "prompt_tokens": prompt_tokens(body["messages"]),
            "completion_tokens": 5,
            "total_tokens": prompt_tokens(body["messages"]) + 5,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if body.get("stream"):
            return self._stream(body, model, usage, wants_tool)
        message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
        if wants_tool:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "".join(TOOL_ARGS_PARTS)},
                }
            ]
        else:
            message["content"] = "".join(TEXT_PARTS)
        payload = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if wants_tool else "stop",
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return Reply(
            200,
            {"content-type": "application/json", "x-request-id": "req_fake"},
            json.dumps(payload).encode(),
        )

    def _stream(
        self, body: dict[str, Any], model: str, usage: dict[str, Any], wants_tool: bool
    ) -> Reply:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": "chatcmpl-fake123",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                obj["usage"] = None
            return sse_data(obj)

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if wants_tool:
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_fake_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                )
            )
            events += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                for part in TOOL_ARGS_PARTS
            ]
            events.append(chunk({}, "tool_calls"))
        else:
            events += [chunk({"content": part}) for part in TEXT_PARTS]
            events.append(chunk({}, "stop"))
        if include_usage:
            events.append(
                sse_data(
                    {
                        "id": "chatcmpl-fake123",
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": model,
                        "service_tier": "default",
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return Reply(200, {"content-type": "text/event-stream; charset=utf-8"}, events=events)
