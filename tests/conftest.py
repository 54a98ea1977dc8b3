"""Test harness: fake upstreams and an in-process gateway, all on 127.0.0.1 ephemeral ports.

Every fixture closes what it opened (ports, pools, open connections): pytest-twisted does not
check for a dirty reactor, so a leak here would show up as flaky later tests instead.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.web.client import Agent, HTTPConnectionPool

from gatewaylib.accesslog import AccessLog
from gatewaylib.app import GatewayApp
from gatewaylib.config import Config, parse_config
from gatewaylib.gateway import Runtime
from gatewaylib.metrics import Metrics
from gatewaylib.service import build_site
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai import API_KEY as OPENAI_KEY
from tests.fakes.openai import FakeOpenAI

BACKEND_KEY = "sk-test-backend-key-5f1c2e9d"
CHATBOT_KEY = "sk-test-chatbot-key-0a8b7c6d"


def gateway_yaml(openai_url: str, anthropic_url: str = "http://127.0.0.1:9/v1") -> str:
    return textwrap.dedent(
        f"""
        listen: "127.0.0.1:0"
        providers:
          openai:    {{ api_key: "${{T_OPENAI_KEY}}", base_url: "{openai_url}" }}
          anthropic: {{ api_key: "${{T_ANTHROPIC_KEY}}", base_url: "{anthropic_url}" }}
          echo:      {{ type: echo }}
        models:
          "gpt-4o":        {{ provider: "openai", model: "gpt-4o" }}
          "fast":          {{ provider: "openai", model: "gpt-4o-mini" }}
          "claude-sonnet": {{ provider: "anthropic", model: "claude-sonnet-4-5" }}
          "demo":          {{ provider: "echo", model: "echo-1" }}
        routing:
          - {{ prefix: "gpt-", provider: "openai" }}
          - {{ prefix: "claude-", provider: "anthropic" }}
        api_keys:
          - {{ key: "${{T_BACKEND}}", app: "my-backend", allowed_models: ["*"] }}
          - {{ key: "${{T_CHATBOT}}", app: "chatbot", allowed_models: ["claude-sonnet", "gpt-4o", "demo", "claude-*"] }}
        """
    )


TEST_ENV = {
    "T_OPENAI_KEY": OPENAI_KEY,
    "T_ANTHROPIC_KEY": ANTHROPIC_KEY,
    "T_BACKEND": BACKEND_KEY,
    "T_CHATBOT": CHATBOT_KEY,
}


@dataclass
class Gateway:
    """A running in-process gateway."""

    url: str
    app: GatewayApp
    runtime: Runtime
    port: Any
    log: io.StringIO

    @property
    def log_lines(self) -> list[str]:
        return self.log.getvalue().splitlines()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


async def start_gateway(config: Config) -> Gateway:
    runtime = Runtime(config, reactor)
    log = io.StringIO()
    app = GatewayApp(runtime, Metrics(), AccessLog(config.log_format, log))
    port = reactor.listenTCP(0, build_site(app, config), interface="127.0.0.1")  # type: ignore[attr-defined]
    return Gateway(f"http://127.0.0.1:{port.getHost().port}", app, runtime, port, log)


async def stop_gateway(gateway: Gateway) -> None:
    await gateway.port.stopListening()
    await gateway.runtime.close()


@pytest_twisted.async_yield_fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def make_config() -> Callable[..., Config]:
    def make(openai_url: str, anthropic_url: str = "http://127.0.0.1:9/v1", **env: str) -> Config:
        text = gateway_yaml(openai_url, anthropic_url)
        return parse_config(text, "test.yaml", {**TEST_ENV, **env})

    return make


@pytest_twisted.async_yield_fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.start()
    yield fake
    await fake.stop()


@pytest_twisted.async_yield_fixture
async def gateway(
    fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, make_config: Callable[..., Config]
) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_config(fake_openai.base_url, fake_anthropic.base_url))
    yield gw
    await stop_gateway(gw)


@pytest_twisted.async_yield_fixture
async def http() -> AsyncIterator[HTTPClient]:
    """A raw HTTP client for the tests' own requests (non-persistent: nothing left open)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield HTTPClient(Agent(reactor, pool=pool))
    await pool.closeCachedConnections()


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking client code (the openai SDK) off the reactor thread; returns a Deferred."""
    return threads.deferToThread(fn, *args, **kwargs)


def openai_client(gateway: Gateway, key: str = BACKEND_KEY) -> Any:
    import openai

    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=20)
