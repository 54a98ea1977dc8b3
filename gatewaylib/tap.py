"""The twistd entry point: options and the service maker named by the plugin."""

from __future__ import annotations

import sys

from twisted.application.service import Service
from twisted.python import usage

from gatewaylib.config import Config, ConfigError, load_config, override_listen
from gatewaylib.tlsdefer import import_without_tls, needs_tls


class Options(usage.Options):
    synopsis = "--config FILE [--listen HOST:PORT] [--check-config]"
    optParameters = [
        ["config", "c", None, "Path to the YAML configuration file (required)."],
        ["listen", "l", None, "Address to listen on, overriding the file's 'listen' (':8080')."],
        ["workers", "w", 1, "Processes sharing the listening port (SO_REUSEPORT).", int],
        [
            "worker-port-base",
            None,
            0,
            "With --workers: worker i also listens on 127.0.0.1:(BASE+i), to scrape its /metrics.",
            int,
        ],
        ["worker-index", None, 0, "(internal) the index of a worker started by --workers.", int],
    ]
    optFlags = [
        ["check-config", None, "Validate the configuration, then exit 0 (valid) or 2."],
    ]

    loaded: Config

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        try:
            self.loaded = load_config(self["config"])
            if self["listen"]:
                self.loaded = override_listen(self.loaded, self["listen"])
        except ConfigError as e:
            # One line, exit code 2: what an operator (or Kubernetes) needs, and no traceback.
            sys.stderr.write(f"litegate: config error: {e}\n")
            raise SystemExit(2) from None
        if not self["check-config"] and not needs_tls(self.loaded):
            import_without_tls()
        if self["check-config"]:
            for warning in self.loaded.warnings:
                sys.stderr.write(f"litegate: warning: {warning}\n")
            sys.stdout.write(f"litegate: {self['config']} is valid\n")
            raise SystemExit(0)


def makeService(options: Options) -> Service:
    from gatewaylib.service import GatewayService

    return GatewayService(
        options["config"],
        options.loaded,
        listen_override=options["listen"],
        workers=options["workers"],
        worker_index=options["worker-index"],
        worker_port_base=options["worker-port-base"],
    )
