"""A fake Anthropic Messages API that speaks the real wire format and validates like the real one.

Validation mirrors the real API's 400s (missing max_tokens, a system role in messages, empty text
blocks, tool_use without tool_result in the next user turn, tool blocks without tools, temperature
above 1, whitespace-only stop sequences, text before tool_result, trailing whitespace in a final
assistant turn), so a translation bug fails a test the way it would fail in production.

Replies: "Hello from fake Claude!"; with tools offered (and tool_choice not none) a text block and a
`get_weather` tool_use; after a tool_result, "It is sunny in Paris."; with thinking on, a thinking
block first; a forced `json_tool_call` answers {"answer":42}. Streams use the real event names,
a ping, a first empty `input_json_delta`, and cumulative `message_delta` usage.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply, sse_named

API_KEY = "sk-ant-fake-provider-key-3c1d"
MODEL_REPORTED = "claude-sonnet-4-5-20250929"
ALLOWED_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config",
        "service_tier", "container", "context_management", "mcp_servers",
    }
)


def error_reply(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    return Reply(status, {"content-type": "application/json", "request-id": "req_fake", **(headers or {})}, json.dumps(body).encode())


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("text", "content"))
    return 0


def validate(body: Any) -> str | None:
    """The real API's message for an invalid request, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    for key in body:
        if key not in ALLOWED_FIELDS:
            return f"{key}: Extra inputs are not permitted"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    for stop in body.get("stop_sequences") or []:
        if not stop.strip():
            return "stop_sequences: each stop sequence must contain non-whitespace"
    has_tool_blocks = False
    messages = body["messages"]
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f'messages.{i}.role: Input should be \'user\' or \'assistant\'; got "{role}"'
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        seen_other = False
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
            if kind in ("tool_use", "tool_result"):
                has_tool_blocks = True
            if kind == "tool_result":
                if seen_other:
                    return f"messages.{i}: tool_result blocks must come first in the content"
            else:
                seen_other = True
            if kind == "tool_use" and role != "assistant":
                return f"messages.{i}.content.{j}: tool_use is only allowed in assistant messages"
            if kind == "image":
                source = block.get("source", {})
                if source.get("type") == "base64" and source.get("media_type") not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
                    return f"messages.{i}.content.{j}.source.media_type: invalid image type"
        if role == "assistant":
            ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            if ids:
                following = messages[i + 1] if i + 1 < len(messages) else None
                answered = set()
                if following and following.get("role") == "user" and isinstance(following.get("content"), list):
                    answered = {b.get("tool_use_id") for b in following["content"] if b.get("type") == "tool_result"}
                missing = [x for x in ids if x not in answered]
                if missing:
                    return (
                        f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                        "corresponding `tool_result` block in the next message."
                    )
            if i == len(messages) - 1:
                texts = [b for b in blocks if b.get("type") == "text"]
                if texts and texts[-1]["text"] != texts[-1]["text"].rstrip():
                    return "messages: final assistant content cannot end with trailing whitespace"
    if has_tool_blocks and not body.get("tools"):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    thinking = body.get("thinking")
    if thinking and thinking.get("type") == "enabled":
        if thinking.get("budget_tokens", 0) < 1024 or thinking["budget_tokens"] >= body["max_tokens"]:
            return "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
        if "temperature" in body or "top_k" in body:
            return "temperature may only be set to 1 when thinking is enabled"
    return None


class FakeAnthropic(FakeServer):
    api_key = API_KEY

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def default_reply(self, recorded: Recorded) -> Reply:
        if recorded.path != "/v1/messages" or recorded.method != "POST":
            return error_reply(404, "not_found_error", "Not found")
        if recorded.headers.get("x-api-key") != self.api_key:
            return error_reply(401, "authentication_error", "invalid x-api-key")
        if recorded.headers.get("anthropic-version") != "2023-06-01":
            return error_reply(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            body = json.loads(recorded.body)
        except ValueError:
            return error_reply(400, "invalid_request_error", "There was an error parsing the body")
        problem = validate(body)
        if problem:
            return error_reply(400, "invalid_request_error", problem)
        return self.reply_for(body, self.choose_content(body))

    @staticmethod
    def choose_content(body: dict[str, Any]) -> list[dict[str, Any]]:
        last = body["messages"][-1]
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        blocks: list[dict[str, Any]] = []
        if (body.get("thinking") or {}).get("type") == "enabled":
            blocks.append({"type": "thinking", "thinking": "The user wants weather.", "signature": "sig_fake_123"})
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool" and choice.get("name") == "json_tool_call":
            return [*blocks, {"type": "tool_use", "id": "toolu_json", "name": "json_tool_call", "input": {"answer": 42}}]
        if any(b.get("type") == "tool_result" for b in content):
            return [*blocks, {"type": "text", "text": "It is sunny in Paris."}]
        if body.get("tools") and choice.get("type") != "none":
            return [
                *blocks,
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01Q", "name": "get_weather", "input": {"city": "Paris"}},
            ]
        return [*blocks, {"type": "text", "text": "Hello from fake Claude!"}]

    def reply_for(
        self,
        body: dict[str, Any],
        blocks: list[dict[str, Any]],
        *,
        usage: dict[str, int] | None = None,
        stop_reason: str | None = None,
    ) -> Reply:
        input_tokens = 10 + _words(body.get("system")) + _words(body["messages"])
        output_tokens = sum(_words(b.get("text", "")) + _words(b.get("thinking", "")) for b in blocks) + 5 * sum(
            1 for b in blocks if b["type"] == "tool_use"
        )
        usage = usage or {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }
        if stop_reason is None:
            stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message = {
            "id": "msg_01FAKE",
            "type": "message",
            "role": "assistant",
            "model": MODEL_REPORTED,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        headers = {"request-id": "req_fake", "anthropic-organization-id": "org_fake"}
        if not body.get("stream"):
            return Reply(200, {"content-type": "application/json", **headers}, json.dumps(message).encode())
        return Reply(200, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", **headers}, events=stream_events(message))


def stream_events(message: dict[str, Any]) -> list[bytes]:
    """The exact event sequence the Messages API streams for `message`."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [sse_named("message_start", {"type": "message_start", "message": start})]
    events.append(sse_named("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            events.append(sse_named("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
            words = block["text"].split(" ")
            for k, word in enumerate(words):
                piece = word if k == 0 else " " + word
                events.append(sse_named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}))
        elif kind == "tool_use":
            events.append(sse_named("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            args = json.dumps(block["input"])
            pieces = ["", args[: len(args) // 2], args[len(args) // 2 :]] if block["input"] else []
            for piece in pieces:
                events.append(sse_named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}))
        elif kind == "thinking":
            events.append(sse_named("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            events.append(sse_named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": block["thinking"]}}))
            events.append(sse_named("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}}))
        events.append(sse_named("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        sse_named(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}},
        )
    )
    events.append(sse_named("message_stop", {"type": "message_stop"}))
    return events
