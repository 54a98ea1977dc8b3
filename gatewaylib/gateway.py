"""The runtime built from one config: keys, router and provider clients, swapped whole on reload.

A request takes the runtime current when it starts and keeps it to the end, so a reload never
changes the rules under a request in flight.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer

from gatewaylib.auth import App, KeyStore
from gatewaylib.config import Config
from gatewaylib.errors import ProviderUnavailable
from gatewaylib.pricing import PriceBook
from gatewaylib.providers import build_provider
from gatewaylib.providers.base import Provider
from gatewaylib.routing import Route, Router


class Runtime:
    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.keys = KeyStore(config.api_keys)
        self.router = Router(config.models, config.routing)
        self.providers: dict[str, Provider] = {
            name: build_provider(provider, reactor)
            for name, provider in config.providers.items()
            if provider.enabled
        }
        self.created = int(time.time())
        self._users = 0
        self._retired: defer.Deferred[Any] | None = None
        self.prices = PriceBook(config)

    def provider_for(self, route: Route) -> Provider:
        provider = self.providers.get(route.provider)
        if provider is None:
            raise ProviderUnavailable(
                f"The provider '{route.provider}' for model '{route.requested}' is not configured "
                "on this gateway (no API key).",
            )
        return provider

    def models_for(self, app: App) -> list[dict[str, Any]]:
        """The `/v1/models` entries this app may use: aliases on enabled providers."""
        return [
            {"id": alias, "object": "model", "created": self.created, "owned_by": spec.provider}
            for alias, spec in self.config.models.items()
            if spec.provider in self.providers and app.may_use(alias)
        ]

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._retired is not None:
            self.close().chainDeferred(self._retired)

    def retire(self) -> defer.Deferred[Any]:
        """Close once the requests still using this runtime (after a reload) have finished."""
        self._retired = defer.Deferred()
        if self._users == 0:
            self.close().chainDeferred(self._retired)
        return self._retired

    def close(self) -> defer.Deferred[Any]:
        return defer.DeferredList(
            [provider.close() for provider in self.providers.values()], consumeErrors=True
        )
