"""Leave TLS out of the process when no configured provider needs it.

pyOpenSSL and cryptography are about 15 MB of a ~45 MB idle process, and Twisted loads them as
soon as the reactor is imported. When every enabled provider is plain http (the echo demo, a
local vLLM, a sidecar behind a TLS-terminating mesh) they are never used, so the reactor and the
web stack are imported with OpenSSL unavailable; Twisted then simply runs without TLS support.
This must happen before anything imports the reactor, i.e. from the twistd plugin's options.
"""

from __future__ import annotations

import sys

from gatewaylib.config import Config

_deferred = False


def needs_tls(config: Config) -> bool:
    return any(p.enabled and p.base_url.startswith("https://") for p in config.providers.values())


def import_without_tls() -> bool:
    """Import the reactor and web stack with OpenSSL hidden; False if the reactor was
    already imported (then TLS is loaded as usual and nothing changes)."""
    global _deferred
    if "twisted.internet.reactor" in sys.modules or "OpenSSL" in sys.modules:
        return False
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # makes `import OpenSSL` fail
    try:
        import klein  # noqa: F401
        import treq  # noqa: F401
        import twisted.internet.endpoints
        import twisted.internet.reactor
        import twisted.web.client  # noqa: F401
    finally:
        del sys.modules["OpenSSL"]
    _deferred = True
    return True


def tls_available() -> bool:
    """False when TLS was left out at start-up: an https provider then needs a restart."""
    return not _deferred
