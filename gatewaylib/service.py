"""The twistd service: listen, reload on SIGHUP, drain on SIGTERM.

twistd does not handle SIGHUP, and on SIGTERM it stops the reactor at once and re-raises the
signal (exit status -15). A gateway must instead report unready, finish what is in flight, and
exit 0, so the service installs its own handlers once the reactor runs. Graceful drain lives in
`stopService`, which twistd waits on during shutdown.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from gatewaylib.accesslog import AccessLog
from gatewaylib.app import GatewayApp, ShuttingDown
from gatewaylib.config import Config, ConfigError, load_config, override_listen
from gatewaylib.gateway import Runtime
from gatewaylib.metrics import Metrics
from gatewaylib.server import GatewaySite

log = Logger()


def build_site(app: GatewayApp, config: Config) -> GatewaySite:
    return GatewaySite(
        app.resource(),
        max_request_bytes=config.limits.max_request_bytes,
        header_timeout=config.timeouts.request_headers,
        body_timeout=config.timeouts.request_body,
        keepalive_timeout=config.timeouts.keepalive,
        on_rejected=app.record_rejected,
    )


class GatewayService(Service):
    def __init__(
        self,
        config_path: str,
        config: Config,
        reactor: Any = None,
        listen_override: str | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self._reactor = reactor
        self._listen_override = listen_override
        self.port: Any = None
        self.site: GatewaySite | None = None
        self.app: GatewayApp | None = None
        self.draining = False
        self._stopping = False

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:
        super().startService()
        runtime = self._runtime(self.config)
        self.app = GatewayApp(
            runtime,
            Metrics(),
            AccessLog(self.config.log_format),
            health=lambda: not self.draining,
            reactor=self.reactor,
        )
        self.site = build_site(self.app, self.config)
        self.port = self.reactor.listenTCP(
            self.config.listen_port, self.site, interface=self.config.listen_host
        )
        address = self.port.getHost()
        log.info("litegate listening on {host}:{port}", host=address.host, port=address.port)
        # twistd starts services before the reactor installs its own handlers: go after it.
        self.reactor.callWhenRunning(self._install_signal_handlers)

    def _runtime(self, config: Config) -> Runtime:
        for warning in config.warnings:
            log.warn("{warning}", warning=warning)
        runtime = Runtime(config, self.reactor)
        for alias in runtime.prices.unpriced_aliases():
            log.warn("model {alias!r} has no price: its cost is recorded as 0", alias=alias)
        return runtime

    # -- signals ----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not hasattr(signal, "SIGHUP"):
            return
        # Python runs these between bytecodes on the main thread; hand over to the reactor.
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))
        signal.signal(signal.SIGTERM, lambda *_: self.reactor.callFromThread(self._terminate))
        signal.signal(signal.SIGINT, lambda *_: self.reactor.callFromThread(self._terminate))

    def _terminate(self) -> None:
        if self._stopping:
            log.warn("second stop signal: exiting now")
            os._exit(1)
        self._stopping = True
        log.info("stop signal: draining (health now 503)")
        self.draining = True
        self.reactor.stop()  # runs stopService, which drains; twistd then exits 0

    def reload(self) -> None:
        """Swap in the config file's current content; keep the old config if it is invalid."""
        assert self.app is not None
        try:
            config = load_config(self.config_path)
            if self._listen_override:
                config = override_listen(config, self._listen_override)
        except ConfigError as e:
            log.error("reload failed, keeping the current config: {error}", error=str(e))
            return
        if (config.listen_host, config.listen_port) != (
            self.config.listen_host,
            self.config.listen_port,
        ):
            log.warn("reload: 'listen' changes take effect only after a restart")
        old = self.app.runtime
        self.app.runtime = self._runtime(config)
        self.config = config
        old.retire()
        log.info("reloaded {path}", path=self.config_path)

    # -- drain --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        self.draining = True
        timeouts = self.config.timeouts
        started = time.monotonic()
        if self.port is not None:
            # Give load balancers a moment to see /health fail before refusing connections.
            yield task.deferLater(self.reactor, timeouts.shutdown_delay, lambda: None)
            yield self.port.stopListening()
        app = self.app
        if app is not None:
            while app.active and time.monotonic() - started < timeouts.drain:
                yield task.deferLater(self.reactor, 0.05, lambda: None)
            if app.active:
                log.warn("drain deadline: ending {n} requests", n=app.active)
                app.abort_all(ShuttingDown("The gateway is shutting down."))
                for _ in range(40):
                    if not app.active:
                        break
                    yield task.deferLater(self.reactor, 0.05, lambda: None)
            yield app.runtime.close()
        site = self.site
        if site is not None:
            # Close client connections ourselves so responses just finished are flushed;
            # the reactor's own shutdown would drop what is still buffered.
            site.close_connections()
            for _ in range(40):
                if not site.channels:
                    break
                yield task.deferLater(self.reactor, 0.05, lambda: None)
