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
from gatewaylib.config import ProviderConfig
from gatewaylib.errors import BadGateway, GatewayError, StreamInterrupted, from_upstream_status
from gatewaylib.providers.base import Call, HTTPProvider
from gatewaylib.sse import DONE, SSEEvent, data_event
from gatewaylib.upstream import UpstreamRequest

# With include_usage every chunk carries `"usage":null`. A raw `,"usage"` can only be a key:
# inside a JSON string a quote is always escaped, so this never touches content.
_NULL_USAGE = re.compile(r',\s*"usage"\s*:\s*null(?=\s*[,}])')
# Only an event whose usage is an object is worth decoding (most chunks carry "usage":null).
_USAGE_OBJECT = re.compile(r'"usage"\s*:\s*\{')


def build_openai_body(call: Call, *, stream_options: bool = True) -> dict[str, Any]:
    """The client's body with the upstream model, and usage requested on streams.

    `stream_options=False` is for servers that reject the field: it is removed and the
    gateway meters whatever usage the server reports on its own.
    """
    body = dict(call.body)
    body["model"] = call.route.upstream_model
    if not stream_options:
        body.pop("stream_options", None)
    elif call.stream and not call.include_usage:
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        body["stream_options"] = options
        call.extras["usage_injected"] = True
    return body


class Dialect:
    """The quirks of one kind of OpenAI-compatible server; this base class has none.

    Subclasses (providers/openai_compat.py) fix requests, responses and chunks; a dialect whose
    `rewrites` is False leaves the pass-through fast path untouched.
    """

    name = "openai"
    #: Whether the server understands `stream_options.include_usage`.
    stream_options = True
    #: Whether responses and chunks go through `fix_response` / `fix_chunk`.
    rewrites = False

    def fix_request(self, body: dict[str, Any], call: Call) -> dict[str, Any]:
        return body

    def fix_response(self, obj: dict[str, Any], call: Call) -> dict[str, Any]:
        """A whole chat.completion; raise GatewayError for a failure reported in it."""
        return obj

    def fix_chunk(self, obj: dict[str, Any], call: Call) -> dict[str, Any]:
        """One chunk; raise GatewayError for a failure reported in it (mid-stream: relayed)."""
        return obj

    def map_error(
        self, provider: str, status: int, headers: dict[str, str], body: bytes
    ) -> GatewayError:
        return openai_error(provider, status, headers, body)


class OpenAIStreamTranslator:
    """Relays events verbatim; drops only the usage chunk the gateway itself asked for.

    When the client asked for `include_usage` and the server reported usage somewhere other than
    a separate chunk (on the finish chunk, in `x_groq`), the separate chunk is synthesised
    before `[DONE]`, as OpenAI sends it.
    """

    def __init__(
        self,
        provider: str,
        drop_usage_chunk: bool,
        *,
        client_usage: bool = False,
        dialect: Dialect | None = None,
        call: Call | None = None,
    ) -> None:
        self._provider = provider
        self._drop_usage_chunk = drop_usage_chunk
        self._client_usage = client_usage
        self._dialect = dialect if dialect is not None and dialect.rewrites else None
        self._call = call
        self._first = True
        self._done = False
        self._failed = False
        self._usage_relayed = False
        self._envelope: dict[str, Any] = {}
        self.usage: Usage | None = None
        self.model: str | None = None
        self.relayed_error: str | None = None

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if self._done or self._failed:
            return []
        if data == "[DONE]":
            self._done = True
            return [*self._closing(), DONE]
        if (
            self._dialect is None
            and not self._first
            and '"error"' not in data
            and not _USAGE_OBJECT.search(data)
        ):
            # The fast path: nothing in this event needs reading.
            if self._drop_usage_chunk and '"usage"' in data:
                data = _NULL_USAGE.sub("", data, count=1)
            return [data_event(data.encode("utf-8"))]
        first = self._first
        self._first = False
        obj = self._inspect(data, first)
        if obj is None:
            return [data_event(data.encode("utf-8"))]
        if "error" in obj:
            self._failed = True
            if first:
                raise _error_from_event(obj, self._provider)
            self.relayed_error = "upstream_5xx"
            return [data_event(data.encode("utf-8"))]
        separate_usage = isinstance(obj.get("usage"), dict) and not obj.get("choices")
        if separate_usage:
            if self._drop_usage_chunk:
                return []
            self._usage_relayed = True
        if self._dialect is not None:
            assert self._call is not None
            try:
                obj = self._dialect.fix_chunk(obj, self._call)
            except GatewayError as err:
                if first:
                    raise
                self._failed = True
                self.relayed_error = err.provider_error or "upstream_5xx"
                return [data_event(err.body())]
            if not separate_usage and isinstance(obj.get("usage"), dict):
                # usage on a content chunk moves to the separate chunk, as OpenAI sends it
                obj = dict(obj)
                if self._client_usage:
                    obj["usage"] = None
                else:
                    del obj["usage"]
            return [data_event(jsonutil.dumps(obj))]
        if self._drop_usage_chunk and '"usage"' in data:
            data = _NULL_USAGE.sub("", data, count=1)
        return [data_event(data.encode("utf-8"))]

    def _inspect(self, data: str, first: bool) -> dict[str, Any] | None:
        try:
            obj = jsonutil.loads(data)
        except jsonutil.JSONError:
            if first:
                raise BadGateway(f"{self._provider} sent a stream event that is not JSON") from None
            return None
        if not isinstance(obj, dict):
            return None
        if first:
            if isinstance(obj.get("model"), str):
                self.model = obj["model"]
            for key in ("id", "created", "model", "system_fingerprint"):
                if key in obj:
                    self._envelope[key] = obj[key]
        usage = Usage.from_openai(obj.get("usage"))
        if usage is None:
            extra = obj.get("x_groq")  # Groq reports stream usage here on its last chunk
            usage = Usage.from_openai(extra.get("usage")) if isinstance(extra, dict) else None
        if usage is not None:
            self.usage = usage
        return obj

    def _closing(self) -> list[bytes]:
        if not self._client_usage or self._usage_relayed or self.usage is None:
            return []
        chunk = {
            "id": self._envelope.get("id", ""),
            "object": "chat.completion.chunk",
            "created": self._envelope.get("created", 0),
            "model": self._envelope.get("model", ""),
            "system_fingerprint": self._envelope.get("system_fingerprint"),
            "choices": [],
            "usage": self.usage.to_openai(),
        }
        return [data_event(jsonutil.dumps(chunk))]

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
    """OpenAI and every OpenAI-compatible server; a `Dialect` carries a server's quirks."""

    def __init__(self, config: ProviderConfig, reactor: Any, dialect: Dialect | None = None):
        super().__init__(config, reactor)
        self.dialect = dialect or Dialect()
        self._stream_options = config.stream_usage and self.dialect.stream_options

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def build_request(self, call: Call) -> UpstreamRequest:
        body = build_openai_body(call, stream_options=self._stream_options)
        body = self.dialect.fix_request(body, call)
        return UpstreamRequest(
            url=f"{self.config.base_url}/chat/completions",
            headers=self._headers(),
            body=jsonutil.dumps(body),
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
        if self.dialect.rewrites:
            return jsonutil.dumps(self.dialect.fix_response(obj, call))
        return body

    def stream_translator(self, call: Call) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(
            self.config.name,
            bool(call.extras.get("usage_injected")),
            client_usage=call.include_usage,
            dialect=self.dialect,
            call=call,
        )

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
        return self.dialect.map_error(self.config.name, status, headers, body)


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
