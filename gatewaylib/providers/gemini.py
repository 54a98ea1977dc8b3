"""Google Gemini native API: responses, streams and errors back to Chat Completions (spec F).

One accumulator consumes `GenerateContentResponse` records, whole (non-streaming) or one SSE
record at a time, and yields chat deltas per candidate; the non-streaming completion is built
from the same state, so both modes agree on content, tool calls, finish reason and usage.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger

from gatewaylib import jsonutil
from gatewaylib.chatformat import ChunkWriter, Usage, completion, new_completion_id
from gatewaylib.errors import BadGateway, GatewayError, StreamInterrupted, from_upstream_status
from gatewaylib.fetch import MAX_MEDIA_BYTES, fetch_media
from gatewaylib.providers.base import Call, HTTPProvider
from gatewaylib.providers.gemini_request import THOUGHT_SEPARATOR, GeminiPlan, translate_request
from gatewaylib.sse import DONE, SSEEvent
from gatewaylib.upstream import UpstreamRequest

log = Logger()

FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "NO_IMAGE",
    }
)
MALFORMED = frozenset(
    {
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MISSING_THOUGHT_SIGNATURE",
        "MALFORMED_RESPONSE",
    }
)
_RETRY_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")


def finish_reason(gemini: str | None, has_tool_calls: bool) -> str:
    """Gemini finishReason -> OpenAI finish_reason (F.3; STOP with calls is `tool_calls`)."""
    if gemini in (None, "STOP", "FINISH_REASON_UNSPECIFIED"):
        return "tool_calls" if has_tool_calls else "stop"
    if gemini == "MAX_TOKENS":
        return "length"
    if gemini in FILTERED:
        return "content_filter"
    if gemini in MALFORMED:
        log.warn("gemini finishReason {reason} reported as stop", reason=gemini)
    elif gemini != "OTHER":
        log.warn("unknown gemini finishReason {reason!r} reported as stop", reason=gemini)
    return "tool_calls" if has_tool_calls else "stop"


def _count(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_metadata(meta: dict[str, Any]) -> Usage:
    """usageMetadata -> Usage (F.3, vector 96): thoughts are completion tokens, and the
    prompt count already includes cached tokens."""
    thoughts = _count(meta, "thoughtsTokenCount")
    usage = Usage(
        prompt_tokens=_count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount"),
        completion_tokens=_count(meta, "candidatesTokenCount") + thoughts,
        cached_tokens=_count(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )
    total = meta.get("totalTokenCount")
    if isinstance(total, int) and total != usage.total_tokens:
        log.warn(
            "gemini totalTokenCount {total} differs from prompt + completion {sum}",
            total=total,
            sum=usage.total_tokens,
        )
    return usage


@dataclass
class _Candidate:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    finished: bool = False


class GeminiAccumulator:
    """Gemini records in, (candidate index, chat delta) out; remembers the whole reply."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.candidates: dict[int, _Candidate] = {}
        self.blocked: str | None = None
        self._meta: dict[str, Any] | None = None

    @property
    def usage(self) -> Usage | None:
        return usage_from_metadata(self._meta) if self._meta is not None else None

    @property
    def complete(self) -> bool:
        """Whether every candidate reported a finishReason (or the prompt was blocked)."""
        if self.blocked is not None:
            return True
        return bool(self.candidates) and all(c.finished for c in self.candidates.values())

    def _candidate(self, index: int, out: list[tuple[int, dict[str, Any]]]) -> _Candidate:
        state = self.candidates.get(index)
        if state is None:
            state = self.candidates[index] = _Candidate()
            out.append((index, {"role": "assistant", "content": ""}))
        return state

    def feed(self, record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        if self.id is None and isinstance(record.get("responseId"), str):
            self.id = record["responseId"]
        if self.model is None and isinstance(record.get("modelVersion"), str):
            self.model = record["modelVersion"]
        if isinstance(record.get("usageMetadata"), dict):
            self._meta = record["usageMetadata"]  # the last record's counts are authoritative
        candidates = record.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            feedback = record.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                self.blocked = str(feedback["blockReason"])
                self._candidate(0, out).finished = True
                log.info("gemini blocked the prompt: {reason}", reason=self.blocked)
            return out
        for candidate in candidates:
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", 0)
            index = index if isinstance(index, int) and not isinstance(index, bool) else 0
            state = self._candidate(index, out)
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict):
                    delta = self._part(state, part)
                    if delta is not None:
                        out.append((index, delta))
            reason = candidate.get("finishReason")
            if isinstance(reason, str):
                state.finish = reason
                state.finished = True
        return out

    def _part(self, state: _Candidate, part: dict[str, Any]) -> dict[str, Any] | None:
        text = part.get("text")
        if isinstance(text, str):
            if not text:
                return None
            if part.get("thought") is True:
                state.reasoning.append(text)
                return {"reasoning_content": text}
            state.text.append(text)
            return {"content": text}
        call = part.get("functionCall")
        if isinstance(call, dict):
            call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
            call_id = call_id or "call_" + secrets.token_hex(12)
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                call_id += THOUGHT_SEPARATOR + signature
            args = call.get("args")
            tool_call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": str(call.get("name") or ""),
                    "arguments": jsonutil.dumps(args if isinstance(args, dict) else {}).decode(),
                },
            }
            delta_call = {"index": len(state.tool_calls), **tool_call}
            state.tool_calls.append(tool_call)
            return {"tool_calls": [delta_call]}
        return None  # inline data, code execution and other parts have no chat equivalent

    def finish_reason(self, index: int) -> str:
        if self.blocked is not None:
            return "content_filter"
        state = self.candidates[index]
        return finish_reason(state.finish, bool(state.tool_calls))

    def completion(self, created: int) -> dict[str, Any]:
        choices = []
        for index in sorted(self.candidates) or [0]:
            state = self.candidates.get(index, _Candidate())
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(state.text) or (None if state.tool_calls else ""),
                "refusal": None,
            }
            if state.tool_calls:
                message["tool_calls"] = state.tool_calls
            if state.reasoning:
                message["reasoning_content"] = "".join(state.reasoning)
            reason = self.finish_reason(index) if index in self.candidates else "stop"
            choices.append(
                {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
            )
        body = completion(
            completion_id=self.completion_id,
            created=created,
            model=self.model or "",
            content=None,
            tool_calls=None,
            finish_reason="stop",
            usage=self.usage or Usage(),
        )
        body["choices"] = choices
        return body

    @property
    def completion_id(self) -> str:
        if self.id is None:
            self.id = new_completion_id().removeprefix("chatcmpl-")
        return f"chatcmpl-{self.id}"


# --------------------------------------------------------------------------------------------
# Errors (F.5)

#: Google status name -> (our status, OpenAI type, code).
STATUS_NAMES: dict[str, tuple[int, str, str | None]] = {
    "INVALID_ARGUMENT": (400, "invalid_request_error", None),
    "FAILED_PRECONDITION": (400, "invalid_request_error", None),
    "OUT_OF_RANGE": (400, "invalid_request_error", None),
    "NOT_FOUND": (404, "invalid_request_error", "model_not_found"),
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error", "rate_limit_exceeded"),
    "INTERNAL": (502, "server_error", "upstream_error"),
    "UNAVAILABLE": (503, "service_unavailable_error", "server_is_overloaded"),
    "DEADLINE_EXCEEDED": (504, "server_error", "timeout"),
}


def _is_key_problem(error: dict[str, Any]) -> bool:
    """Gemini answers a bad key with 400 INVALID_ARGUMENT: that is the operator's key failing."""
    if error.get("status") in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return True
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("reason", "")).startswith("API_KEY"):
            return True
    return "api key" in str(error.get("message", "")).lower()


def _retry_after(error: dict[str, Any]) -> str | None:
    """google.rpc.RetryInfo `retryDelay: "17s"` -> a Retry-After value."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("retryDelay"), str):
            match = _RETRY_DELAY.fullmatch(detail["retryDelay"])
            if match:
                return str(math.ceil(float(match.group(1))))
    return None


def gemini_error(status: int, headers: dict[str, str], error: Any) -> GatewayError:
    """A Google `error` object (body or stream record) with its HTTP status -> ours."""
    if not isinstance(error, dict):
        return from_upstream_status(status, headers, None, provider="gemini")
    message = str(error.get("message") or f"gemini returned HTTP {status}")
    if _is_key_problem(error):
        return from_upstream_status(401, headers, message, provider="gemini")
    name = str(error.get("status") or "")
    if name == "RESOURCE_EXHAUSTED" and "retry-after" not in headers:
        delay = _retry_after(error)
        if delay is not None:
            headers = {**headers, "retry-after": delay}
    mapped = STATUS_NAMES.get(name)
    if mapped is None:
        return from_upstream_status(status, headers, message, provider="gemini")
    code_status, error_type, code = mapped
    if code_status == 504:
        return GatewayError(
            message, status=504, type=error_type, code=code, provider_error="timeout"
        )
    if code_status == 404 and "model" not in message.lower():
        code = None
    return from_upstream_status(
        code_status, headers, message, error_type=error_type, code=code, provider="gemini"
    )


def gemini_error_response(status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    try:
        obj = jsonutil.loads(body)
    except jsonutil.JSONError:
        return from_upstream_status(status, headers, None, provider="gemini")
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]  # the JSON-array stream form wraps errors in a list
    error = obj.get("error") if isinstance(obj, dict) else None
    return gemini_error(status, headers, error)


# --------------------------------------------------------------------------------------------
# Streams (F.4)


class GeminiStreamTranslator:
    """Gemini SSE records -> `chat.completion.chunk` SSE bytes.

    The stream has no end sentinel: the finish chunks, the usage chunk and `[DONE]` are written
    at EOF, once every candidate has reported its finishReason.
    """

    relayed_error = None  # Gemini error records are translated and raised, never relayed

    def __init__(self, call: Call) -> None:
        self._acc = GeminiAccumulator()
        self._created = call.created
        self._include_usage = call.include_usage
        self._writer: ChunkWriter | None = None

    @property
    def usage(self) -> Usage | None:
        return self._acc.usage

    @property
    def model(self) -> str | None:
        return self._acc.model

    def feed(self, event: SSEEvent) -> list[bytes]:
        try:
            record = jsonutil.loads(event.data)
        except jsonutil.JSONError:
            raise BadGateway("gemini sent a stream record that is not JSON") from None
        if not isinstance(record, dict):
            raise BadGateway("gemini sent an unexpected stream record")
        if "error" in record:
            error = record["error"]
            code = error.get("code") if isinstance(error, dict) else None
            raise gemini_error(code if isinstance(code, int) else 500, {}, error)
        deltas = self._acc.feed(record)
        if self._writer is None:
            self._writer = ChunkWriter(
                self._acc.completion_id, self._created, self._acc.model or "", self._include_usage
            )
        return [self._writer.chunk(delta, None, index) for index, delta in deltas]

    def finish(self) -> list[bytes]:
        if self._writer is None or not self._acc.complete:
            raise StreamInterrupted("the gemini stream ended before a finishReason")
        out = [
            self._writer.chunk({}, self._acc.finish_reason(index), index)
            for index in sorted(self._acc.candidates)
        ]
        usage = self._acc.usage
        if self._include_usage and usage is not None:
            out.append(self._writer.usage_chunk(usage))
        out.append(DONE)
        return out


class GeminiProvider(HTTPProvider):
    async def prepare(self, call: Call) -> None:
        """Download the http(s) images Gemini cannot fetch and inline them (spec F.2)."""
        budget = MAX_MEDIA_BYTES
        for download in self._plan(call).downloads:
            media = await fetch_media(
                self._clock,
                download.url,
                param=download.param,
                timeout=min(self.config.timeouts.first_event, 30.0),
                limit=budget,
                allow_private=self.config.allow_private_urls,
            )
            budget -= len(media.data)
            download.part["inlineData"] = {
                "mimeType": media.mime_type,
                "data": base64.b64encode(media.data).decode("ascii"),
            }

    def _plan(self, call: Call) -> GeminiPlan:
        plan = call.extras.get("gemini_plan")
        if plan is None:
            plan = translate_request(call.body, call.route.upstream_model)
            for warning in plan.warnings:
                log.info("gemini request adjusted: {warning}", warning=warning)
            call.extras["gemini_plan"] = plan
        return plan

    def build_request(self, call: Call) -> UpstreamRequest:
        plan = self._plan(call)
        model = quote(call.route.upstream_model.removeprefix("models/"), safe="-._~")
        action = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
        return UpstreamRequest(
            url=f"{self.config.base_url}/models/{model}:{action}",
            headers={
                "x-goog-api-key": self.config.api_key,
                "content-type": "application/json",
                "accept": "text/event-stream" if call.stream else "application/json",
            },
            body=jsonutil.dumps(plan.body),
        )

    def parse_response(self, call: Call, body: bytes) -> bytes:
        try:
            record = jsonutil.loads(body)
        except jsonutil.JSONError:
            raise BadGateway("gemini returned a response that is not JSON") from None
        if not isinstance(record, dict) or not (
            "candidates" in record or "promptFeedback" in record
        ):
            raise BadGateway("gemini returned an unexpected response shape")
        acc = GeminiAccumulator()
        acc.feed(record)
        call.usage = acc.usage
        call.response_model = acc.model
        return jsonutil.dumps(acc.completion(call.created))

    def stream_translator(self, call: Call) -> GeminiStreamTranslator:
        return GeminiStreamTranslator(call)

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
        return gemini_error_response(status, headers, body)
