"""What a request cost, from its usage and the model's prices (USD per million tokens).

Cached prompt tokens are billed at the cache-read price and cache writes at the cache-write
price, never at the full input price (the mistake that put other gateways' cache costs off 2-7x).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources

from gatewaylib.chatformat import Usage
from gatewaylib.config import Config, Price


def _defaults() -> dict[str, Price]:
    raw = json.loads(resources.files("gatewaylib").joinpath("pricing.json").read_text())
    return {name: Price(**spec) for name, spec in raw["models"].items()}


_DEFAULTS: dict[str, Price] | None = None


def default_prices() -> Mapping[str, Price]:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = _defaults()
    return _DEFAULTS


def _lookup(table: Mapping[str, Price], model: str) -> Price | None:
    """Exact name, else the longest entry the name starts with (dated snapshots: a model
    `claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`)."""
    price = table.get(model)
    if price is not None:
        return price
    best = ""
    for name in table:
        if model.startswith(name + "-") and len(name) > len(best):
            best = name
    return table[best] if best else None


def cost(usage: Usage, price: Price) -> float:
    cached = usage.cached_tokens
    written = usage.cache_write_tokens
    uncached = max(usage.prompt_tokens - cached - written, 0)
    read_price = price.input if price.cache_read is None else price.cache_read
    write_price = price.input if price.cache_write is None else price.cache_write
    total = (
        uncached * price.input
        + cached * read_price
        + written * write_price
        + usage.completion_tokens * price.output
    )
    return total / 1_000_000


class PriceBook:
    """Resolves prices for one config: alias override, config table, then defaults."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._free = {
            alias
            for alias, spec in config.models.items()
            if config.providers[spec.provider].type == "echo"
        }

    def price_for(self, alias: str | None, upstream_model: str) -> Price | None:
        if alias is not None:
            spec = self._config.models.get(alias)
            if spec is not None and spec.pricing is not None:
                return spec.pricing
            if alias in self._free:
                return Price(0.0, 0.0)
            if alias in self._config.pricing:
                return self._config.pricing[alias]
        return _lookup(self._config.pricing, upstream_model) or _lookup(
            default_prices(), upstream_model
        )

    def unpriced_aliases(self) -> list[str]:
        return [
            alias
            for alias, spec in self._config.models.items()
            if self.price_for(alias, spec.model) is None
        ]
