"""Every error litegate reports, as OpenAI's error shape plus the status that is the contract.

The OpenAI SDKs choose their exception class from the status alone and retry 408/409/429/5xx
unless `x-should-retry: false` is present, so each error carries both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gatewaylib import jsonutil

# Strings that look like credentials, scrubbed from any upstream message we relay.
_KEY_SHAPED = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}"
    r"|(?:key|token|bearer)[=: ]+[A-Za-z0-9_\-\.]{12,}"
    r"|[A-Za-z0-9_\-]{32,})",
    re.IGNORECASE,
)


def scrub(message: str) -> str:
    """Replace key-shaped substrings: upstream messages sometimes echo a key fragment."""
    return _KEY_SHAPED.sub("[redacted]", message)


class GatewayError(Exception):
    """An error answered to the client as `{"error": {message, type, param, code}}`."""

    status = 500
    type = "server_error"
    code: str | None = None
    #: Set when the provider caused the error: the `error_type` label of
    #: llm_provider_errors_total (rate_limited, upstream_5xx, upstream_4xx, timeout, connect,
    #: auth, bad_response, stream_interrupted).
    provider_error: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
        provider_error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})
        if retryable is None:
            retryable = self.status in (408, 409, 429) or self.status >= 500
        self.retryable = retryable
        if provider_error is not None:
            self.provider_error = provider_error

    def payload(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return jsonutil.dumps(self.payload())

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if not self.retryable:
            headers["x-should-retry"] = "false"
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(
        self, message: str = "Invalid or missing API key. Pass 'Authorization: Bearer <key>'."
    ) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotAllowed(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PathNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class ProviderUnavailable(GatewayError):
    """The provider is configured but unusable (no key): the operator must fix the config."""

    status = 503
    type = "service_unavailable_error"
    code = "provider_not_configured"


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "server_error"
    code = "upstream_unavailable"
    provider_error = "connect"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "server_error"
    code = "timeout"
    provider_error = "timeout"


class BadGateway(GatewayError):
    status = 502
    type = "server_error"
    code = "bad_gateway"
    provider_error = "bad_response"


class StreamInterrupted(GatewayError):
    status = 502
    type = "server_error"
    code = "upstream_stream_interrupted"
    provider_error = "stream_interrupted"


_COPIED_HEADERS = ("retry-after", "retry-after-ms")


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream headers a client needs to back off correctly, copied verbatim."""
    return {
        k: v for k, v in headers.items() if k in _COPIED_HEADERS or k.startswith("x-ratelimit-")
    }


def from_upstream_status(
    status: int,
    headers: Mapping[str, str],
    message: str | None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    provider: str = "upstream",
) -> GatewayError:
    """Map an upstream error status to ours (reliability.md, the errors table).

    `headers` must have lower-case names. `message` is None when the body was not JSON.
    """
    copied = rate_limit_headers(headers)
    if message is None:
        return BadGateway(f"{provider} returned a non-JSON error (HTTP {status})")
    message = scrub(message)
    if status in (401, 403):
        return GatewayError(
            f"{provider} rejected the gateway's credentials (HTTP {status}); "
            "the operator must fix the provider key",
            status=502,
            type="server_error",
            code="upstream_auth_failed",
            retryable=False,
            provider_error="auth",
        )
    if status == 429:
        err = GatewayError(
            message,
            status=429,
            type=error_type or "rate_limit_error",
            code=code or "rate_limit_exceeded",
            param=param,
            headers=copied,
            provider_error="rate_limited",
        )
        if "retry-after" not in headers and "retry-after-ms" not in headers:
            err.retryable = False
        return err
    if status in (503, 529):
        return GatewayError(
            message,
            status=503,
            type="service_unavailable_error",
            code="server_is_overloaded",
            headers={k: v for k, v in copied.items() if k.startswith("retry-after")},
            provider_error="upstream_5xx",
        )
    if status >= 500:
        return GatewayError(
            message,
            status=502,
            type="server_error",
            code="upstream_error",
            provider_error="upstream_5xx",
        )
    if 400 <= status < 500:
        return GatewayError(
            message,
            status=status,
            type=error_type or "invalid_request_error",
            code=code,
            param=param,
            provider_error="upstream_4xx",
        )
    return BadGateway(f"{provider} answered with unexpected HTTP status {status}")
