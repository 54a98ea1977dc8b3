"""Downloading media that a provider cannot fetch itself (http image URLs sent to Gemini).

The URL comes from the caller, so by default only public addresses are fetched: otherwise any
virtual-key holder could make the gateway read internal services (cloud metadata endpoints,
admin ports) and have a model describe them. Every failure is the caller's 400, naming the part.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, threads
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from gatewaylib.errors import GatewayError, InvalidRequest
from gatewaylib.upstream import lower_headers, read_body

#: Gemini refuses requests over 20 MB; inline media must fit in that.
MAX_MEDIA_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Media:
    mime_type: str
    data: bytes


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


async def _check_public(host: str, port: int, param: str) -> None:
    try:
        addresses = [host] if _is_ip(host) else await _resolve(host, port)
    except OSError:
        raise InvalidRequest(
            f"Could not resolve the host of the URL ({host}).", param=param
        ) from None
    if not addresses or not all(_public(a) for a in addresses):
        raise InvalidRequest(
            "The URL points to a private, loopback or link-local address; litegate downloads "
            "only from public addresses.",
            param=param,
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> list[str]:
    infos = await threads.deferToThread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def fetch_media(
    reactor: Any,
    url: str,
    *,
    param: str,
    timeout: float,
    limit: int = MAX_MEDIA_BYTES,
    allow_private: bool = False,
) -> Media:
    """GET an image or PDF; raise InvalidRequest (400, `param`) on any failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("The URL must be http(s) with a host.", param=param)
    try:
        encoded = url.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidRequest("The URL must be ASCII (percent-encode it).", param=param) from None
    if not allow_private:
        await _check_public(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), param
        )
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = Agent(reactor, connectTimeout=timeout, pool=pool)
    d = agent.request(
        b"GET",
        encoded,
        Headers({b"accept": [b"image/*, application/pdf"], b"user-agent": [b"litegate"]}),
    )
    timer = reactor.callLater(timeout, d.cancel)
    try:
        response: Any = await d
    except defer.CancelledError:
        if not timer.active():
            raise InvalidRequest(
                f"Downloading the URL took over {timeout:g}s.", param=param
            ) from None
        raise
    except Exception:
        raise InvalidRequest("Could not download the URL.", param=param) from None
    finally:
        if timer.active():
            timer.cancel()
    headers = lower_headers(response)
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    length = headers.get("content-length", "")
    problem = None
    if response.code != 200:
        problem = f"Downloading the URL failed with HTTP {response.code}."
    elif not (kind.startswith("image/") or kind == "application/pdf"):
        problem = f"The URL is not an image or PDF (content-type {kind or 'missing'})."
    elif length.isdigit() and int(length) > limit:
        problem = f"The file at the URL is over {limit} bytes."
    if problem is not None:
        response.deliverBody(_Discard())
        raise InvalidRequest(problem, param=param)
    try:
        data = await read_body(response, reactor, timeout, limit)
    except GatewayError:
        raise InvalidRequest(
            f"The file at the URL is over {limit} bytes or could not be read.", param=param
        ) from None
    return Media(kind, data)


class _Discard(Protocol):
    """A body consumer that drops the connection at once (the pool is not persistent)."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()
