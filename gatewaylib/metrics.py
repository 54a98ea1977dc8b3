"""The metric families and the one function that records a finished exchange into them.

Label values are bounded by the config: `virtual_key` is an app name, `model` an alias (or a
prefix-routed name the upstream accepted, else `other`), `provider` a configured provider name
(or `none`), `status` an HTTP status and `error_type` a small fixed set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gatewaylib.exchange import Exchange

#: LLM calls take from milliseconds (cached, tiny) to many minutes (long generations).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900)
#: Time to first byte matters most below a second.
FIRST_BYTE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
#: The gateway's own time per request: sub-millisecond when healthy.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_requests_total",
            "Requests answered, by app, provider, model and HTTP status.",
            ["virtual_key", "provider", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "llm_request_duration_seconds",
            "Time from request received to response finished.",
            ["virtual_key", "provider", "model", "stream"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_tokens_total",
            "Tokens reported by the provider; prompt includes cached tokens.",
            ["virtual_key", "provider", "model", "direction"],
            registry=r,
        )
        self.first_byte = Histogram(
            "llm_stream_first_byte_seconds",
            "Time from request received to the first byte of a streamed response.",
            ["virtual_key", "provider", "model"],
            buckets=FIRST_BYTE_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "llm_provider_errors_total",
            "Failures caused by a provider, by kind.",
            ["provider", "error_type"],
            registry=r,
        )
        self.cost = Counter(
            "llm_cost_dollars_total",
            "Estimated cost in USD from the provider's usage and the configured prices.",
            ["virtual_key", "provider", "model"],
            registry=r,
        )
        self.in_flight = Gauge(
            "llm_requests_in_flight", "Requests being processed now.", registry=r
        )
        self._cache: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.overhead = Histogram(
            "llm_gateway_overhead_seconds",
            "Time spent in the gateway itself (request duration minus upstream wait).",
            ["provider"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )

    def _child(self, family: Any, labels: tuple[str, ...]) -> Any:
        """A labelled child, looked up once: prometheus_client's labels() costs several
        microseconds per call, several calls per request."""
        key = (id(family), labels)
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = family.labels(*labels)
        return child

    def record(self, ex: Exchange) -> None:
        app, provider, model = ex.app or "none", ex.provider_label, ex.model_label
        child = self._child
        child(self.requests, (app, provider, model, str(ex.status))).inc()
        stream = "true" if ex.stream else "false"
        child(self.duration, (app, provider, model, stream)).observe(ex.duration)
        if ex.usage is not None:
            child(self.tokens, (app, provider, model, "prompt")).inc(ex.usage.prompt_tokens)
            child(self.tokens, (app, provider, model, "completion")).inc(ex.usage.completion_tokens)
        if ex.cost:
            child(self.cost, (app, provider, model)).inc(ex.cost)
        if ex.first_byte is not None:
            child(self.first_byte, (app, provider, model)).observe(ex.first_byte - ex.started)
        error_type = ex.provider_error_type
        if error_type is not None:
            self.provider_errors.labels(provider, error_type).inc()
        if ex.route is not None:
            self.overhead.labels(provider).observe(ex.overhead)
