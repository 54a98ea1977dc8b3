"""Provider implementations, imported only for the types a config uses (idle memory)."""

from __future__ import annotations

from typing import Any

from gatewaylib.config import ProviderConfig
from gatewaylib.providers.base import Provider


def build_provider(config: ProviderConfig, reactor: Any) -> Provider:
    if config.type == "openai":
        from gatewaylib.providers.openai import OpenAIProvider

        return OpenAIProvider(config, reactor)
    if config.type in ("mistral", "groq"):
        from gatewaylib.providers.openai import OpenAIProvider
        from gatewaylib.providers.openai_compat import DIALECTS

        return OpenAIProvider(config, reactor, DIALECTS[config.type]())
    if config.type == "gemini":
        from gatewaylib.providers.gemini import GeminiProvider

        return GeminiProvider(config, reactor)
    if config.type == "echo":
        from gatewaylib.providers.echo import EchoProvider

        return EchoProvider(config, reactor)
    if config.type == "anthropic":
        from gatewaylib.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config, reactor)
    raise ValueError(f"unknown provider type {config.type!r}")
