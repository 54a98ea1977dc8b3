"""Building OpenAI Chat Completions objects: usage, chunks and whole completions.

The internal lingua franca is the chat format; every translating provider builds its output
here so that envelopes (id, created, model, `usage` key rules) are identical everywhere.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.sse import data_event


@dataclass(frozen=True)
class Usage:
    """Token counts in OpenAI's terms: `prompt_tokens` includes cached and cache-write tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        prompt_details: dict[str, int] = {"cached_tokens": self.cached_tokens}
        if self.cache_write_tokens:
            prompt_details["cache_creation_tokens"] = self.cache_write_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read an OpenAI usage object leniently (nulls and missing details count as 0)."""
        if not isinstance(usage, dict):
            return None

        def num(obj: Any, key: str) -> int:
            value = obj.get(key) if isinstance(obj, dict) else None
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        prompt_details = usage.get("prompt_tokens_details")
        completion_details = usage.get("completion_tokens_details")
        return cls(
            prompt_tokens=num(usage, "prompt_tokens"),
            completion_tokens=num(usage, "completion_tokens"),
            cached_tokens=num(prompt_details, "cached_tokens"),
            cache_write_tokens=num(prompt_details, "cache_creation_tokens"),
            reasoning_tokens=num(completion_details, "reasoning_tokens"),
        )


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


class ChunkWriter:
    """Encodes `chat.completion.chunk` events that share one id, created and model."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage

    def chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            obj["usage"] = None
        return data_event(jsonutil.dumps(obj))

    def usage_chunk(self, usage: Usage) -> bytes:
        obj = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage.to_openai(),
        }
        return data_event(jsonutil.dumps(obj))


def completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]] | None,
    finish_reason: str,
    usage: Usage,
    extra_message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streaming `chat.completion` object (translation.md B.2)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if extra_message:
        message.update(extra_message)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage.to_openai(),
        "system_fingerprint": None,
    }
