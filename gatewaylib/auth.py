"""Virtual keys: who is calling (the app) and which models it may use."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from gatewaylib.config import VirtualKeyConfig
from gatewaylib.errors import AuthenticationFailed, ModelNotAllowed

#: Longer presented tokens are refused before hashing: no key we issue is that long.
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True)
class App:
    """The caller behind a virtual key. Holds no secret: safe to log and label."""

    name: str
    allowed_models: tuple[str, ...]

    def may_use(self, model: str) -> bool:
        return any(
            pattern == "*" or pattern == model or fnmatch.fnmatchcase(model, pattern)
            for pattern in self.allowed_models
        )

    def check_model(self, model: str) -> None:
        if not self.may_use(model):
            raise ModelNotAllowed(f"This API key is not allowed to use the model '{model}'.")


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class KeyStore:
    """Constant-time lookup of virtual keys by the SHA-256 of the presented token."""

    def __init__(self, keys: Iterable[VirtualKeyConfig]) -> None:
        self._by_digest: dict[bytes, tuple[bytes, App]] = {}
        for key in keys:
            digest = _digest(key.key.encode("utf-8"))
            self._by_digest[digest] = (digest, App(key.app, key.allowed_models))

    def authenticate(self, authorization: bytes | None) -> App:
        """Return the App for an `Authorization: Bearer <key>` header value, or raise 401."""
        if not authorization or len(authorization) > MAX_TOKEN_BYTES + 16:
            raise AuthenticationFailed()
        scheme, _, token = authorization.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationFailed()
        presented = _digest(token)
        # The dict lookup is keyed by a hash of the secret, so its timing reveals nothing
        # usable; compare_digest keeps the final comparison constant-time all the same.
        stored, app = self._by_digest.get(presented, (b"\0" * 32, None))
        if app is None or not hmac.compare_digest(stored, presented):
            raise AuthenticationFailed()
        return app
