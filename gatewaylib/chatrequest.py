"""Validation of an inbound Chat Completions body: the checks every provider relies on.

Deep semantic checks stay with each provider's translator (or the upstream itself, for the
pass-through); here we refuse what is malformed or what would let a caller steer the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.errors import InvalidJSON, InvalidRequest

#: Body fields that would let a caller choose where or how a request is sent (LiteLLM honours
#: some of these; a gateway that forwards them lets any tenant redirect traffic and keys).
FORBIDDEN_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "extra_headers",
        "headers",
        "custom_llm_provider",
        "organization",
    }
)


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    if not raw.strip():
        raise InvalidJSON("The request body is empty; expected a JSON object.")
    try:
        obj = jsonutil.loads_strict(raw)
    except jsonutil.JSONError as e:
        raise InvalidJSON(f"The request body is not valid JSON: {e}.") from None
    if not isinstance(obj, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    return obj


def check_forbidden(body: dict[str, Any]) -> None:
    for name in FORBIDDEN_FIELDS:
        if name in body:
            raise InvalidRequest(
                f"The field '{name}' is not accepted: the gateway decides where requests go.",
                param=name,
            )


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    return model


def parse_stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        flag = options.get("include_usage", False)
        if not isinstance(flag, bool) and flag is not None:
            raise InvalidRequest(
                "'stream_options.include_usage' must be a boolean.",
                param="stream_options.include_usage",
            )
        include_usage = bool(flag)
    return stream, include_usage and stream


def parse_chat_request(raw: bytes) -> ChatRequest:
    body = parse_json_object(raw)
    check_forbidden(body)
    model = require_model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidRequest(
                f"messages[{i}].role must be a string.", param=f"messages[{i}].role"
            )
    stream, include_usage = parse_stream_flags(body)
    return ChatRequest(body, model, stream, include_usage)
