"""OpenAI and OpenAI-compatible servers: the pass-through fast path.

Requests go out with only `model` replaced (plus `stream_options.include_usage` on streams, so
tokens are always metered); responses and stream events are relayed as the upstream wrote them.
Only the first event, events carrying usage, and errors are looked inside.
"""

from __future__ import annotations

import re
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.chatformat import Usage
from gatewaylib.errors import BadGateway, GatewayError, StreamInterrupted, from_upstream_status
from gatewaylib.providers.base import Call, HTTPProvider
from gatewaylib.sse import DONE, SSEEvent, data_event
from gatewaylib.upstream import UpstreamRequest

# With include_usage every chunk carries `"usage":null`. A raw `,"usage"` can only be a key:
# inside a JSON string a quote is always escaped, so this never touches content.
_NULL_USAGE = re.compile(r',\s*"usage"\s*:\s*null(?=\s*[,}])')
# Only an event whose usage is an object is worth decoding (most chunks carry "usage":null).
_USAGE_OBJECT = re.compile(r'"usage"\s*:\s*\{')


def build_openai_body(call: Call) -> dict[str, Any]:
    """The client's body with the upstream model, and usage requested on streams."""
    body = dict(call.body)
    body["model"] = call.route.upstream_model
    if call.stream and not call.include_usage:
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        body["stream_options"] = options
        call.extras["usage_injected"] = True
    return body


class OpenAIStreamTranslator:
    """Relays events verbatim; drops only the usage chunk the gateway itself asked for."""

    def __init__(self, provider: str, drop_usage_chunk: bool) -> None:
        self._provider = provider
        self._drop_usage_chunk = drop_usage_chunk
        self._first = True
        self._done = False
        self._failed = False
        self.usage: Usage | None = None
        self.model: str | None = None
        self.relayed_error: str | None = None

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if self._done or self._failed:
            return []
        if data == "[DONE]":
            self._done = True
            return [DONE]
        if self._first or '"error"' in data or _USAGE_OBJECT.search(data):
            obj = self._inspect(data)
            if obj is not None and "error" in obj:
                self._failed = True
                if self._first:
                    raise _error_from_event(obj, self._provider)
                self.relayed_error = "upstream_5xx"
            elif (
                obj is not None
                and self._drop_usage_chunk
                and obj.get("usage")
                and not obj.get("choices")
            ):
                self._first = False
                return []
            self._first = False
        if self._drop_usage_chunk and '"usage"' in data:
            data = _NULL_USAGE.sub("", data, count=1)
        return [data_event(data.encode("utf-8"))]

    def _inspect(self, data: str) -> dict[str, Any] | None:
        try:
            obj = jsonutil.loads(data)
        except jsonutil.JSONError:
            if self._first:
                raise BadGateway(f"{self._provider} sent a stream event that is not JSON") from None
            return None
        if not isinstance(obj, dict):
            return None
        if self._first and isinstance(obj.get("model"), str):
            self.model = obj["model"]
        usage = Usage.from_openai(obj.get("usage"))
        if usage is not None:
            self.usage = usage
        return obj

    def finish(self) -> list[bytes]:
        if self._failed:
            return []
        if not self._done:
            raise StreamInterrupted(f"the stream from {self._provider} ended before [DONE]")
        return []


def _error_from_event(obj: dict[str, Any], provider: str) -> GatewayError:
    error = obj.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return GatewayError(
        str(message or f"{provider} reported an error"),
        status=502,
        type="server_error",
        code="upstream_error",
        provider_error="upstream_5xx",
    )


class OpenAIProvider(HTTPProvider):
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def build_request(self, call: Call) -> UpstreamRequest:
        return UpstreamRequest(
            url=f"{self.config.base_url}/chat/completions",
            headers=self._headers(),
            body=jsonutil.dumps(build_openai_body(call)),
        )

    def parse_response(self, call: Call, body: bytes) -> bytes:
        try:
            obj = jsonutil.loads(body)
        except jsonutil.JSONError:
            raise BadGateway(f"{self.config.name} returned a response that is not JSON") from None
        if not isinstance(obj, dict) or "choices" not in obj:
            raise BadGateway(f"{self.config.name} returned an unexpected response shape")
        call.usage = Usage.from_openai(obj.get("usage"))
        model = obj.get("model")
        call.response_model = model if isinstance(model, str) else None
        return body

    def stream_translator(self, call: Call) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(self.config.name, bool(call.extras.get("usage_injected")))

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
        return openai_error(self.config.name, status, headers, body)


def openai_error(provider: str, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    """Map an OpenAI-shaped error response, keeping its type/code/param for 4xx."""
    try:
        obj = jsonutil.loads(body)
    except jsonutil.JSONError:
        obj = None
    error = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(error, dict):
        message = error if isinstance(error, str) else None
        if message is None and isinstance(obj, dict) and isinstance(obj.get("message"), str):
            message = obj["message"]
        if message is None and obj is not None:
            message = f"{provider} returned HTTP {status}"
        return from_upstream_status(status, headers, message, provider=provider)

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) else None

    return from_upstream_status(
        status,
        headers,
        text("message") or f"{provider} returned HTTP {status}",
        error_type=text("type"),
        code=text("code"),
        param=text("param"),
        provider=provider,
    )
