"""Virtual keys and routing, without the network."""

from __future__ import annotations

import pytest

from gatewaylib.auth import KeyStore
from gatewaylib.config import ModelAlias, PrefixRule, VirtualKeyConfig
from gatewaylib.errors import AuthenticationFailed, ModelNotAllowed, ModelNotFound
from gatewaylib.routing import Router

KEYS = KeyStore(
    [
        VirtualKeyConfig("sk-backend-0123456789", "backend", ("*",)),
        VirtualKeyConfig("sk-chatbot-0123456789", "chatbot", ("claude-*", "gpt-4o")),
    ]
)


def test_bearer_key_identifies_the_app() -> None:
    """A known key in any case of 'Bearer' yields its app."""
    assert KEYS.authenticate(b"Bearer sk-backend-0123456789").name == "backend"
    assert KEYS.authenticate(b"bearer   sk-chatbot-0123456789 ").name == "chatbot"


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Basic sk-backend-0123456789",
        b"sk-backend-0123456789",
        b"Bearer sk-backend-012345678",
        b"Bearer sk-backend-01234567890",
        "Bearer sk-bäckend".encode(),
        b"Bearer \xff\xfe",
        b"Bearer " + b"x" * 65536,
    ],
)
def test_bad_credentials_are_401(header: bytes | None) -> None:
    """Missing, malformed, unknown, non-ASCII and huge tokens all get the same 401."""
    with pytest.raises(AuthenticationFailed) as info:
        KEYS.authenticate(header)
    assert info.value.status == 401
    assert info.value.response_headers()["WWW-Authenticate"] == "Bearer"


def test_allowed_models_with_globs() -> None:
    """'*' allows all; globs and exact names restrict; anything else is 403."""
    chatbot = KEYS.authenticate(b"Bearer sk-chatbot-0123456789")
    assert chatbot.may_use("claude-sonnet") and chatbot.may_use("gpt-4o")
    assert not chatbot.may_use("gpt-4o-mini")
    with pytest.raises(ModelNotAllowed) as info:
        chatbot.check_model("gpt-4o-mini")
    assert (info.value.status, info.value.code, info.value.type) == (403, "model_not_allowed", "permission_error")
    assert KEYS.authenticate(b"Bearer sk-backend-0123456789").may_use("anything")


ROUTER = Router(
    {"gpt-4o": ModelAlias("gpt-4o", "openai", "gpt-4o-2024-08-06"), "smart": ModelAlias("smart", "anthropic", "claude-opus-4")},
    (PrefixRule("gpt-", "openai"), PrefixRule("g", "groq"), PrefixRule("claude-", "anthropic")),
)


def test_alias_first_then_prefix_rules_in_order() -> None:
    """Aliases win; then the first matching prefix rule, with the name kept as the upstream model."""
    route = ROUTER.route("smart")
    assert (route.provider, route.upstream_model, route.alias is not None) == ("anthropic", "claude-opus-4", True)
    assert ROUTER.route("gpt-4o").upstream_model == "gpt-4o-2024-08-06"
    route = ROUTER.route("gpt-4.1")
    assert (route.provider, route.upstream_model, route.alias) == ("openai", "gpt-4.1", None)
    assert ROUTER.route("gemma").provider == "groq"


def test_unroutable_is_404() -> None:
    """A name matched by nothing is 404 model_not_found with param 'model'."""
    with pytest.raises(ModelNotFound) as info:
        ROUTER.route("llama")
    assert (info.value.status, info.value.code, info.value.param) == (404, "model_not_found", "model")
