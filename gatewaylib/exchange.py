"""One record per request: the only input of the metrics and the access log.

Handlers fill it in as the request goes; `finish` runs exactly once, from
`request.notifyFinish()`, which fires for finished and aborted requests alike, so the counts
of requests, metrics and log lines always agree.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from gatewaylib.chatformat import Usage
from gatewaylib.errors import GatewayError
from gatewaylib.routing import Route

#: Label used for requests rejected before a model was known, and for unbounded names.
NONE = "none"
OTHER = "other"

_OUTCOME_BY_STATUS = {
    400: "bad_request",
    401: "auth_fail",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    408: "timeout",
    413: "bad_request",
    422: "bad_request",
    429: "rate_limited",
    504: "timeout",
}


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass
class Exchange:
    method: str
    path: str
    request_id: str
    started: float  # perf_counter
    wall_started: float  # time.time
    app: str | None = None
    requested_model: str | None = None
    route: Route | None = None
    stream: bool = False
    error: GatewayError | None = None
    #: perf_counter of the first byte written to a streaming client.
    first_byte: float | None = None
    #: Seconds spent waiting on the upstream (or the echo provider's delays).
    upstream_seconds: float = 0.0
    usage: Usage | None = None
    response_model: str | None = None
    #: A provider failure that did not become the HTTP status (mid-stream errors).
    stream_error: str | None = None
    #: The provider call, once there is one (its usage is read when the exchange finishes).
    call: Any = None
    # Derived by finish():
    status: int = 0
    outcome: str = ""
    duration: float = 0.0
    cost: float = 0.0
    finished: bool = False

    @classmethod
    def begin(cls, method: str, path: str) -> Exchange:
        return cls(method, path, new_request_id(), time.perf_counter(), time.time())

    # -- labels ----------------------------------------------------------------------------

    @property
    def provider_label(self) -> str:
        return self.route.provider if self.route is not None else NONE

    @property
    def model_label(self) -> str:
        """The alias asked for; a prefix-routed name only once the upstream accepted it."""
        if self.route is None:
            return NONE if self.requested_model is None else OTHER
        if self.route.alias is not None:
            return self.route.requested
        return self.route.requested if 200 <= self.status < 300 else OTHER

    @property
    def provider_error_type(self) -> str | None:
        if self.stream_error is not None:
            return self.stream_error
        if self.error is not None:
            return self.error.provider_error
        return None

    # -- completion ------------------------------------------------------------------------

    def finish(self, status: int, aborted: bool, cost: float = 0.0) -> None:
        self.finished = True
        self.status = status
        self.duration = time.perf_counter() - self.started
        self.cost = cost
        if aborted:
            self.outcome = "client_abort"
        elif self.provider_error_type is not None:
            self.outcome = "timeout" if self.provider_error_type == "timeout" else "upstream_error"
        elif status < 400:
            self.outcome = "ok"
        elif status in _OUTCOME_BY_STATUS:
            self.outcome = _OUTCOME_BY_STATUS[status]
        elif self.error is not None and self.error.code == "overloaded":
            self.outcome = "overloaded"
        elif status >= 500 and (self.error is None or self.error.code == "internal_error"):
            self.outcome = "internal_error"
        else:
            self.outcome = "unavailable"

    @property
    def overhead(self) -> float:
        """Time the gateway itself spent: everything not waiting on the upstream."""
        return max(self.duration - self.upstream_seconds, 0.0)

    def log_fields(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "time": _iso(self.wall_started),
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": round(self.duration * 1000, 3),
            "virtual_key": self.app or "-",
            "provider": self.provider_label,
            "model": self.model_label,
            "upstream_model": self.route.upstream_model if self.route else "-",
            "stream": self.stream,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cost": round(self.cost, 8),
            "outcome": self.outcome,
        }


def _iso(ts: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int((ts % 1) * 1000):03d}Z"
