"""Anthropic Messages API: responses, streams and errors back to Chat Completions (spec B-D).

One accumulator (`MessageAccumulator`, the C.3 state machine) consumes Anthropic stream events
and yields chat deltas. Non-streaming messages are replayed through it as events, so a stream and
a non-stream reply to the same message agree on content, tool calls, finish reason and usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from gatewaylib import jsonutil
from gatewaylib.chatformat import ChunkWriter, Usage, completion
from gatewaylib.errors import BadGateway, GatewayError, StreamInterrupted, from_upstream_status
from gatewaylib.providers.anthropic_request import JSON_TOOL, RequestPlan, translate_request
from gatewaylib.providers.base import Call, HTTPProvider
from gatewaylib.sse import DONE, SSEEvent
from gatewaylib.upstream import UpstreamRequest

log = Logger()

ANTHROPIC_VERSION = "2023-06-01"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
    "compaction": "length",
}

#: In-stream / error-body `error.type` -> (status, OpenAI type, code) (spec D.3).
ERROR_TYPES: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (502, "server_error", "upstream_auth_failed"),
    "permission_error": (502, "server_error", "upstream_auth_failed"),
    "billing_error": (402, "insufficient_quota", "insufficient_quota"),
    "not_found_error": (404, "invalid_request_error", None),
    "conflict_error": (409, "invalid_request_error", "conflict"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (502, "server_error", "upstream_error"),
    "timeout_error": (504, "server_error", "timeout"),
    "overloaded_error": (503, "service_unavailable_error", "server_is_overloaded"),
}


def _count(usage: dict[str, Any], key: str) -> int | None:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class _Block:
    kind: str  # text | tool | json | thinking | redacted | other
    tool_index: int = -1
    args_seen: bool = False
    text: list[str] = field(default_factory=list)
    signature: str = ""
    data: str = ""


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class MessageAccumulator:
    """Anthropic events in, chat deltas out; remembers the whole message as it goes."""

    def __init__(self, plan: RequestPlan | None = None) -> None:
        plan = plan or RequestPlan({})
        self._json_tool = plan.json_tool
        self._expose_thinking = plan.thinking
        self._legacy = plan.legacy_functions
        self.id: str | None = None
        self.model: str | None = None
        self.started = False
        self.stopped = False
        self._input: dict[str, int] = {}
        self._output_tokens = 0
        self._reasoning_tokens = 0
        self._blocks: dict[int, _Block] = {}
        self.text: list[str] = []
        self.tool_calls: list[_ToolCall] = []
        self.reasoning: list[str] = []
        self.thinking_blocks: list[dict[str, Any]] = []
        self.stop_reason: str | None = None

    # -- results --------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        inp = self._input
        cache_write = inp.get("cache_creation_input_tokens", 0)
        cache_read = inp.get("cache_read_input_tokens", 0)
        return Usage(
            prompt_tokens=inp.get("input_tokens", 0) + cache_write + cache_read,
            completion_tokens=self._output_tokens,
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
            reasoning_tokens=self._reasoning_tokens,
        )

    @property
    def finish_reason(self) -> str:
        if self._legacy and self.tool_calls:
            return "function_call"
        reason = self.stop_reason
        if reason == "tool_use" and self._json_tool and not self.tool_calls:
            return "stop"
        if reason in FINISH_REASONS:
            if reason == "pause_turn":
                log.warn("anthropic stop_reason pause_turn reported as stop")
            return FINISH_REASONS[reason]
        if reason is not None:
            log.warn("unknown anthropic stop_reason {reason!r}", reason=reason)
        return "tool_calls" if self.tool_calls else "stop"

    def completion(self, created: int) -> dict[str, Any]:
        content = "".join(self.text) or None
        extra: dict[str, Any] = {}
        tool_calls = None
        if self._legacy and self.tool_calls:
            first = self.tool_calls[0]
            extra["function_call"] = {
                "name": first.name,
                "arguments": "".join(first.arguments) or "{}",
            }
        else:
            tool_calls = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments) or "{}"},
                }
                for call in self.tool_calls
            ]
        if self.reasoning:
            extra["reasoning_content"] = "".join(self.reasoning)
        if self.thinking_blocks:
            extra["thinking_blocks"] = self.thinking_blocks
        return completion(
            completion_id=f"chatcmpl-{self.id}",
            created=created,
            model=self.model or "",
            content=content,
            tool_calls=tool_calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            extra_message=extra,
        )

    # -- events ---------------------------------------------------------------------------

    def feed(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one event; return the chat deltas it produces (possibly none)."""
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = str(message.get("id") or "msg")
            self.model = message.get("model") if isinstance(message.get("model"), str) else None
            self._take_usage(message.get("usage") or {})
            self.started = True
            return [{"role": "assistant", "content": ""}]
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), data.get("delta") or {})
        if kind == "content_block_stop":
            return self._block_stop(data.get("index"))
        if kind == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason") is not None:
                self.stop_reason = delta["stop_reason"]
            self._take_usage(data.get("usage") or {})
            return []
        if kind == "message_stop":
            self.stopped = True
        return []  # ping and unknown events

    def _take_usage(self, usage: dict[str, Any]) -> None:
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = _count(usage, key)
            if value is not None:
                self._input[key] = value
        output = _count(usage, "output_tokens")
        if output is not None:
            self._output_tokens = output  # cumulative, not an increment
        details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            thinking = _count(details, "thinking_tokens")
            if thinking is not None:
                self._reasoning_tokens = thinking

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = _Block("text")
            text = block.get("text")
            return self._text(text) if isinstance(text, str) and text else []
        if kind == "tool_use":
            name = str(block.get("name") or "")
            initial = block.get("input")
            if self._json_tool and name == JSON_TOOL:
                self._blocks[index] = state = _Block("json")
                if isinstance(initial, dict) and initial:
                    state.args_seen = True
                    return self._text(jsonutil.dumps(initial).decode())
                return []
            ordinal = len(self.tool_calls)
            call = _ToolCall(str(block.get("id") or f"toolu_{ordinal}"), name)
            self.tool_calls.append(call)
            state = _Block("tool", tool_index=ordinal)
            self._blocks[index] = state
            deltas = [self._tool_delta(ordinal, call, first=True, arguments="")]
            if isinstance(initial, dict) and initial:
                state.args_seen = True
                deltas.append(self._args(ordinal, jsonutil.dumps(initial).decode()))
            return deltas
        if kind == "thinking":
            self._blocks[index] = state = _Block("thinking")
            text = block.get("thinking")
            if isinstance(text, str) and text:
                return self._thinking(state, text)
            return []
        if kind == "redacted_thinking":
            self._blocks[index] = _Block("redacted", data=str(block.get("data") or ""))
            return []
        self._blocks[index] = _Block("other")  # server tools, web search results, ...
        return []

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._blocks.get(index)
        if state is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta" and state.kind == "text":
            text = delta.get("text")
            return self._text(text) if isinstance(text, str) and text else []
        if kind == "input_json_delta" and state.kind in ("tool", "json"):
            fragment = delta.get("partial_json")
            if not isinstance(fragment, str) or not fragment:
                return []
            state.args_seen = True
            if state.kind == "json":
                return self._text(fragment)
            return [self._args(state.tool_index, fragment)]
        if kind == "thinking_delta" and state.kind == "thinking":
            text = delta.get("thinking")
            return self._thinking(state, text) if isinstance(text, str) and text else []
        if kind == "signature_delta" and state.kind == "thinking":
            signature = delta.get("signature")
            if isinstance(signature, str):
                state.signature += signature
        return []

    def _block_stop(self, index: Any) -> list[dict[str, Any]]:
        state = self._blocks.get(index)
        if state is None:
            return []
        if state.kind == "tool" and not state.args_seen:
            state.args_seen = True
            return [self._args(state.tool_index, "{}")]
        if state.kind == "json" and not state.args_seen:
            state.args_seen = True
            return self._text("{}")
        block: dict[str, Any]
        if state.kind == "thinking":
            block = {
                "type": "thinking",
                "thinking": "".join(state.text),
                "signature": state.signature,
            }
        elif state.kind == "redacted":
            block = {"type": "redacted_thinking", "data": state.data}
        else:
            return []
        self.thinking_blocks.append(block)
        # Streaming clients need the signed block too, to send it back with tool results.
        return [{"thinking_blocks": [block]}] if self._expose_thinking else []

    # -- delta builders -------------------------------------------------------------------

    def _text(self, text: str) -> list[dict[str, Any]]:
        self.text.append(text)
        return [{"content": text}]

    def _thinking(self, state: _Block, text: str) -> list[dict[str, Any]]:
        state.text.append(text)
        self.reasoning.append(text)
        return [{"reasoning_content": text}] if self._expose_thinking else []

    def _tool_delta(
        self, ordinal: int, call: _ToolCall, *, first: bool, arguments: str
    ) -> dict[str, Any]:
        if self._legacy:
            return {"function_call": {"name": call.name, "arguments": arguments}}
        return {
            "tool_calls": [
                {
                    "index": ordinal,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }
            ]
        }

    def _args(self, ordinal: int, fragment: str) -> dict[str, Any]:
        self.tool_calls[ordinal].arguments.append(fragment)
        if self._legacy:
            return {"function_call": {"arguments": fragment}}
        return {"tool_calls": [{"index": ordinal, "function": {"arguments": fragment}}]}


def message_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Replay a non-streaming Message as the stream events that would have produced it."""
    start = {key: value for key, value in message.items() if key not in ("content", "stop_reason")}
    start["content"] = []
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start})]
    for index, block in enumerate(message.get("content") or []):
        if not isinstance(block, dict):
            continue
        events.append(("content_block_start", {"index": index, "content_block": block}))
        if block.get("type") == "thinking":
            events.append(
                (
                    "content_block_delta",
                    {
                        "index": index,
                        "delta": {
                            "type": "signature_delta",
                            "signature": block.get("signature", ""),
                        },
                    },
                )
            )
        events.append(("content_block_stop", {"index": index}))
    events.append(
        (
            "message_delta",
            {
                "delta": {"stop_reason": message.get("stop_reason")},
                "usage": message.get("usage") or {},
            },
        )
    )
    events.append(("message_stop", {}))
    return events


def error_from_event(error: Any) -> GatewayError:
    """An Anthropic `error` object (in-stream or in a body) -> our error."""
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or "Anthropic reported an error")
    status, openai_type, code = ERROR_TYPES.get(kind, (502, "server_error", "upstream_error"))
    if status == 502 and code == "upstream_auth_failed":
        message = (
            "anthropic rejected the gateway's credentials; the operator must fix the provider key"
        )
        return GatewayError(message, status=502, type=openai_type, code=code, provider_error="auth")
    kinds = {429: "rate_limited", 503: "upstream_5xx", 504: "timeout"}
    return GatewayError(
        message,
        status=status,
        type=openai_type,
        code=code,
        provider_error=kinds.get(status, "upstream_4xx" if status < 500 else "upstream_5xx"),
    )


class AnthropicStreamTranslator:
    """Anthropic SSE events -> `chat.completion.chunk` SSE bytes (spec C.3)."""

    def __init__(self, call: Call, plan: RequestPlan) -> None:
        self._acc = MessageAccumulator(plan)
        self._created = call.created
        self._include_usage = call.include_usage
        self._writer: ChunkWriter | None = None
        self._done = False

    @property
    def usage(self) -> Usage | None:
        return self._acc.usage if self._acc.started else None

    @property
    def model(self) -> str | None:
        return self._acc.model

    relayed_error = None  # Anthropic error events are translated and raised, never relayed

    def feed(self, event: SSEEvent) -> list[bytes]:
        if self._done:
            return []
        kind = event.event or ""
        if kind == "ping":
            return []
        try:
            data = jsonutil.loads(event.data) if event.data else {}
        except jsonutil.JSONError:
            raise BadGateway("anthropic sent a stream event that is not JSON") from None
        if not isinstance(data, dict):
            raise BadGateway("anthropic sent an unexpected stream event")
        kind = kind or str(data.get("type") or "")
        if kind == "error":
            raise error_from_event(data.get("error"))
        if not self._acc.started and kind != "message_start":
            if kind in (
                "content_block_start",
                "content_block_delta",
                "message_delta",
                "message_stop",
            ):
                raise BadGateway("anthropic stream did not begin with message_start")
            return []
        deltas = self._acc.feed(kind, data)
        if kind == "message_start":
            self._writer = ChunkWriter(
                f"chatcmpl-{self._acc.id}",
                self._created,
                self._acc.model or "",
                self._include_usage,
            )
        assert self._writer is not None
        out = [self._writer.chunk(delta) for delta in deltas]
        if self._acc.stopped:
            self._done = True
            out.append(self._writer.chunk({}, self._acc.finish_reason))
            if self._include_usage:
                out.append(self._writer.usage_chunk(self._acc.usage))
            out.append(DONE)
        return out

    def finish(self) -> list[bytes]:
        if not self._done:
            raise StreamInterrupted("the anthropic stream ended before message_stop")
        return []


def anthropic_error(status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    """An Anthropic error response -> ours (spec D.3 and the settled decisions)."""
    try:
        obj = jsonutil.loads(body)
    except jsonutil.JSONError:
        obj = None
    error = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(error, dict):
        return from_upstream_status(status, headers, None, provider="anthropic")
    message = str(error.get("message") or f"anthropic returned HTTP {status}")
    kind = str(error.get("type") or "")
    headers = {**headers, **_ratelimit_headers(headers)}
    code: str | None = None
    error_type: str | None = None
    if status == 400 and message.startswith("prompt is too long"):
        code = "context_length_exceeded"
    elif status == 402 or kind == "billing_error":
        status, error_type, code = 402, "insufficient_quota", "insufficient_quota"
    elif status == 404 and "model" in message.lower():
        code = "model_not_found"
    elif status == 409:
        code = "conflict"
    elif status == 413:
        code = "request_too_large"
    elif status == 403 and kind == "permission_error":
        error_type = "permission_error"
    return from_upstream_status(
        status, headers, message, error_type=error_type, code=code, provider="anthropic"
    )


def _ratelimit_headers(headers: dict[str, str]) -> dict[str, str]:
    """anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} -> OpenAI's names."""
    out = {}
    for kind in ("requests", "tokens"):
        for field_name in ("limit", "remaining", "reset"):
            value = headers.get(f"anthropic-ratelimit-{kind}-{field_name}")
            if value is not None:
                out[f"x-ratelimit-{field_name}-{kind}"] = value
    return out


class AnthropicProvider(HTTPProvider):
    def _plan(self, call: Call) -> RequestPlan:
        plan = call.extras.get("anthropic_plan")
        if plan is None:
            alias = call.route.alias
            plan = translate_request(
                call.body,
                call.route.upstream_model,
                default_max_tokens=alias.max_tokens if alias else None,
                stream=call.stream,
            )
            for warning in plan.warnings:
                log.info("anthropic request adjusted: {warning}", warning=warning)
            call.extras["anthropic_plan"] = plan
        return plan

    def build_request(self, call: Call) -> UpstreamRequest:
        plan = self._plan(call)
        return UpstreamRequest(
            url=f"{self.config.base_url}/messages",
            headers={
                "x-api-key": self.config.api_key,
                "anthropic-version": ANTHROPIC_VERSION,
                "content-type": "application/json",
                "accept": "application/json",
            },
            body=jsonutil.dumps(plan.body),
        )

    def parse_response(self, call: Call, body: bytes) -> bytes:
        try:
            message = jsonutil.loads(body)
        except jsonutil.JSONError:
            raise BadGateway("anthropic returned a response that is not JSON") from None
        if not isinstance(message, dict) or message.get("type") != "message":
            raise BadGateway("anthropic returned an unexpected response shape")
        acc = MessageAccumulator(self._plan(call))
        for kind, data in message_events(message):
            acc.feed(kind, data)
        call.usage = acc.usage
        call.response_model = acc.model
        return jsonutil.dumps(acc.completion(call.created))

    def stream_translator(self, call: Call) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(call, self._plan(call))

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
        return anthropic_error(status, headers, body)
