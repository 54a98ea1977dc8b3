"""Model name -> (provider, upstream model): the alias map first, then prefix rules in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gatewaylib.config import ModelAlias, PrefixRule
from gatewaylib.errors import ModelNotFound


@dataclass(frozen=True)
class Route:
    provider: str
    upstream_model: str
    #: The name the client asked for.
    requested: str
    #: The alias config when routed by alias; None when a prefix rule matched.
    alias: ModelAlias | None = None


class Router:
    def __init__(self, models: Mapping[str, ModelAlias], rules: tuple[PrefixRule, ...]) -> None:
        self._models = dict(models)
        self._rules = rules

    def route(self, model: str) -> Route:
        alias = self._models.get(model)
        if alias is not None:
            return Route(alias.provider, alias.model, model, alias)
        for rule in self._rules:
            if model.startswith(rule.prefix):
                return Route(rule.provider, model, model)
        raise ModelNotFound(
            f"The model '{model}' does not exist or is not routed by this gateway.",
            param="model",
        )
