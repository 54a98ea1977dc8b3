"""The twistd service: listen, reload on SIGHUP, drain on SIGTERM.

twistd does not handle SIGHUP, and on SIGTERM it stops the reactor at once and re-raises the
signal (exit status -15). A gateway must instead report unready, finish what is in flight, and
exit 0, so the service installs its own handlers once the reactor runs. Graceful drain lives in
`stopService`, which twistd waits on during shutdown.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from gatewaylib.accesslog import AccessLog
from gatewaylib.app import GatewayApp, ShuttingDown
from gatewaylib.config import Config, ConfigError, load_config, override_listen
from gatewaylib.gateway import Runtime
from gatewaylib.metrics import Metrics
from gatewaylib.server import GatewaySite
from gatewaylib.tlsdefer import needs_tls, tls_available

log = Logger()

#: Connections the kernel queues before accept(). Twisted's default is 50: a burst of clients
#: (1,000 streams opening at once in the benchmark) then overflows it, and the dropped SYNs are
#: retried by the clients after 1, 3, 7 s: seconds of latency for a gateway that is idle.
LISTEN_BACKLOG = 1024


def freeze_startup_objects() -> None:
    """Keep what start-up loaded (modules, config: ~50,000 objects) out of every GC pass.

    A full pass with 1,000 streams open took ~100 ms, every stream stalled meanwhile, and the
    start-up objects were a quarter of what it scanned. (Making full passes rarer instead,
    threshold 100 for 10, cut the stream benchmark's tail but let the soak's memory grow 9 MB.)
    """
    gc.collect()
    gc.freeze()


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self, index: int) -> None:
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        log.info("worker {i} exited", i=self.index)
        self.ended.callback(None)


def listen_shared(reactor: Any, host: str, port: int, site: Any) -> Any:
    """Listen with SO_REUSEPORT so that several processes share the port (the kernel spreads
    connections between them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        return reactor.adoptStreamPort(sock.fileno(), family, site)
    finally:
        sock.close()  # adoptStreamPort keeps its own duplicate


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
        workers: int = 1,
        worker_index: int = 0,
        worker_port_base: int = 0,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self._reactor = reactor
        self._listen_override = listen_override
        self.workers = workers
        self.worker_index = worker_index
        self.worker_port_base = worker_port_base
        self._children: list[Any] = []
        self._extra_ports: list[Any] = []
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
            AccessLog(self.config.log_format, clock=self.reactor),
            health=lambda: not self.draining,
            reactor=self.reactor,
        )
        self.site = build_site(self.app, self.config)
        if self.workers > 1 or self.worker_index:
            self.port = listen_shared(
                self.reactor, self.config.listen_host, self.config.listen_port, self.site
            )
        else:
            self.port = self.reactor.listenTCP(
                self.config.listen_port,
                self.site,
                backlog=LISTEN_BACKLOG,
                interface=self.config.listen_host,
            )
        address = self.port.getHost()
        log.info("litegate listening on {host}:{port}", host=address.host, port=address.port)
        if self.worker_port_base:
            own = self.worker_port_base + self.worker_index
            self._extra_ports.append(self.reactor.listenTCP(own, self.site, interface="127.0.0.1"))
            log.info("worker {i} also on 127.0.0.1:{port}", i=self.worker_index, port=own)
        if self.workers > 1 and not self.worker_index:
            self._spawn_workers(address.port)
        # twistd starts services before the reactor installs its own handlers: go after it.
        self.reactor.callWhenRunning(self._install_signal_handlers)
        freeze_startup_objects()

    def _runtime(self, config: Config) -> Runtime:
        for warning in config.warnings:
            log.warn("{warning}", warning=warning)
        runtime = Runtime(config, self.reactor)
        for alias in runtime.prices.unpriced_aliases():
            log.warn("model {alias!r} has no price: its cost is recorded as 0", alias=alias)
        return runtime

    # -- workers ------------------------------------------------------------------------------

    def _spawn_workers(self, port: int) -> None:
        """Start workers 1..N-1 as separate processes bound to the same port (SO_REUSEPORT)."""
        host = self.config.listen_host
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for index in range(1, self.workers):
            args = [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",  # twistd, whatever its path
                "-n",
                "--pidfile=",
                "litegate",
                "--config",
                self.config_path,
                "--listen",
                address,
                "--worker-index",
                str(index),
                "--worker-port-base",
                str(self.worker_port_base),
            ]
            self._children.append(
                self.reactor.spawnProcess(
                    _WorkerProtocol(index),
                    sys.executable,
                    args,
                    env=os.environ,
                    childFDs={1: 1, 2: 2},
                )
            )

    def _stop_workers(self) -> defer.Deferred[Any]:
        waits = []
        for child in self._children:
            if child.pid is not None:
                child.signalProcess("TERM")
                waits.append(child.proto.ended)
        return defer.DeferredList(waits)

    # -- signals ----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not hasattr(signal, "SIGHUP"):
            return
        # Python runs these between bytecodes on the main thread; hand over to the reactor.
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self._hup))
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

    def _hup(self) -> None:
        for child in self._children:
            if child.pid is not None:
                child.signalProcess("HUP")
        self.reload()

    def reload(self) -> None:
        """Swap in the config file's current content; keep the old config if it is invalid."""
        assert self.app is not None
        try:
            config = load_config(self.config_path)
            if self._listen_override:
                config = override_listen(config, self._listen_override)
            if needs_tls(config) and not tls_available():
                raise ConfigError(
                    f"{self.config_path}: an https provider needs TLS, which was left out at "
                    "start-up (no https provider then): restart to apply this config"
                )
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
        children = self._stop_workers()
        if self.app is not None:
            self.app.access_log.flush()
        for extra in self._extra_ports:
            extra.stopListening()
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
        yield children
        if self.app is not None:
            self.app.access_log.flush()
