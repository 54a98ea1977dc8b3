"""The twistd service: builds the runtime from the config and listens."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.server import Site

from gatewaylib.accesslog import AccessLog
from gatewaylib.app import GatewayApp
from gatewaylib.config import Config
from gatewaylib.gateway import Runtime
from gatewaylib.metrics import Metrics

log = Logger()


class GatewaySite(Site):
    """A Site without twisted.web's own access log (litegate writes its own) or tracebacks."""

    noisy = False
    displayTracebacks = False

    def log(self, request: Any) -> None:
        pass


class GatewayService(Service):
    def __init__(self, config_path: str, config: Config, reactor: Any = None) -> None:
        self.config_path = config_path
        self.config = config
        self._reactor = reactor
        self.port: Any = None
        self.runtime: Runtime | None = None
        self.app: GatewayApp | None = None

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:
        super().startService()
        for warning in self.config.warnings:
            log.warn("{warning}", warning=warning)
        self.runtime = Runtime(self.config, self.reactor)
        for alias in self.runtime.prices.unpriced_aliases():
            log.warn("model {alias!r} has no price: its cost is recorded as 0", alias=alias)
        self.app = GatewayApp(self.runtime, Metrics(), AccessLog(self.config.log_format))
        site = GatewaySite(self.app.resource())
        self.port = self.reactor.listenTCP(
            self.config.listen_port, site, interface=self.config.listen_host
        )
        address = self.port.getHost()
        log.info("litegate listening on {host}:{port}", host=address.host, port=address.port)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            yield self.port.stopListening()
        if self.runtime is not None:
            yield self.runtime.close()
