"""Config loading: expansion, validation and the one-line errors operators see."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gatewaylib.config import ConfigError, Timeouts, load_config, parse_config, parse_listen

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "sk-abcdefghijklmnop"

BASE = """\
listen: ":8080"
providers:
  openai: { api_key: "${OPENAI_API_KEY}" }
  anthropic: { api_key: "${ANTHROPIC_API_KEY}", base_url: "https://api.anthropic.com/v1" }
models:
  "gpt-4o": { provider: "openai", model: "gpt-4o" }
  "claude-sonnet": { provider: "anthropic", model: "claude-sonnet-4-20250514" }
routing:
  - { prefix: "gpt-", provider: "openai" }
  - { prefix: "claude-", provider: "anthropic" }
api_keys:
  - { key: "${VKEY_BACKEND}", app: "my-backend", allowed_models: ["*"] }
  - { key: "${VKEY_CHATBOT}", app: "chatbot", allowed_models: ["claude-sonnet", "gpt-4o"] }
"""

ENV = {
    "OPENAI_API_KEY": "sk-openai-secret-value-1",
    "ANTHROPIC_API_KEY": "sk-ant-secret-value-2",
    "VKEY_BACKEND": "vk-backend-secret-0001",
    "VKEY_CHATBOT": "vk-chatbot-secret-0002",
}


def load(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_config(textwrap.dedent(text), "cfg.yaml", ENV if env is None else env)


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    message = str(info.value)
    assert "\n" not in message
    for secret in ENV.values():
        assert secret not in message
    return message


def test_seed_format_loads_exactly() -> None:
    """The seed's documented format loads with every field in place."""
    config = load(BASE)
    assert (config.listen_host, config.listen_port) == ("", 8080)
    assert config.providers["openai"].api_key == ENV["OPENAI_API_KEY"]
    assert config.providers["openai"].base_url == "https://api.openai.com/v1"
    assert config.providers["anthropic"].type == "anthropic"
    assert config.models["claude-sonnet"].model == "claude-sonnet-4-20250514"
    assert [(r.prefix, r.provider) for r in config.routing] == [("gpt-", "openai"), ("claude-", "anthropic")]
    assert [(k.app, k.allowed_models) for k in config.api_keys] == [
        ("my-backend", ("*",)),
        ("chatbot", ("claude-sonnet", "gpt-4o")),
    ]
    assert config.timeouts == Timeouts()
    assert config.warnings == ()


def test_secrets_are_not_in_reprs() -> None:
    """A logged config object never shows a key."""
    config = load(BASE)
    text = repr(config)
    for secret in ENV.values():
        assert secret not in text


def test_empty_provider_key_disables_provider_with_warning() -> None:
    """A provider whose api_key expands empty is disabled with a warning, not an error."""
    env = {k: v for k, v in ENV.items() if k != "OPENAI_API_KEY"}
    config = load(BASE, env)
    assert config.providers["openai"].enabled is False
    assert config.providers["anthropic"].enabled is True
    assert config.warnings == (
        "provider 'openai' is disabled: its api_key (${OPENAI_API_KEY}) is empty; requests routed to it get 503",
    )


def test_example_config_starts_without_any_environment() -> None:
    """config.example.yaml is valid on a fresh machine: no keys, the echo demo enabled."""
    config = load_config(str(ROOT / "config.example.yaml"), env={})
    assert config.providers["echo"].enabled
    assert not config.providers["openai"].enabled
    assert not config.providers["anthropic"].enabled
    assert config.models["demo"].provider == "echo"
    disabled = ("openai", "anthropic", "gemini", "mistral", "groq")
    assert [w.split("'")[1] for w in config.warnings] == list(disabled)


def test_default_expansion() -> None:
    """${VAR:-default} takes the default when VAR is unset or empty."""
    text = BASE.replace('"${VKEY_BACKEND}"', '"${VKEY_MISSING:-vk-default-key-00001}"')
    config = load(text)
    assert config.api_keys[0].key == "vk-default-key-00001"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"${VKEY_CHATBOT}"',
            '"${VKEY_UNSET}"',
            "cfg.yaml:13: api_keys[1].key: environment variable VKEY_UNSET is not set",
        ),
        (
            '"${VKEY_CHATBOT}"',
            '"${VKEY_CHATBOT"',
            "cfg.yaml:13: api_keys[1].key: unresolved '${...}' (expected ${NAME} or ${NAME:-default})",
        ),
        (
            '"${VKEY_CHATBOT}"',
            '"short-key"',
            "cfg.yaml:13: api_keys[1].key: is shorter than 16 characters",
        ),
        (
            '"${VKEY_CHATBOT}"',
            '"${VKEY_BACKEND}"',
            "cfg.yaml:13: api_keys[1].key: is the same key as api_keys[0].key",
        ),
        (
            '{ provider: "anthropic", model: "claude-sonnet-4-20250514" }',
            '{ provider: "anthropik", model: "x" }',
            "cfg.yaml:7: models.claude-sonnet.provider: unknown provider 'anthropik' (defined: openai, anthropic)",
        ),
        (
            '{ prefix: "claude-", provider: "anthropic" }',
            '{ prefix: "claude-", provider: "gemini" }',
            "cfg.yaml:10: routing[1].provider: unknown provider 'gemini' (defined: openai, anthropic)",
        ),
        (
            'allowed_models: ["claude-sonnet", "gpt-4o"]',
            'allowed_models: ["claude-sonnet", "llama-3"]',
            "cfg.yaml:13: api_keys[1].allowed_models[1]: 'llama-3' matches no alias and no routing prefix",
        ),
        (
            'listen: ":8080"',
            'listen: "8080"',
            "cfg.yaml:1: listen: expected ':PORT', 'HOST:PORT' or '[IPv6]:PORT'",
        ),
        (
            'app: "chatbot"',
            'app: "chat bot"',
            "cfg.yaml:13: api_keys[1].app: must be 1-64 characters of A-Z a-z 0-9 _ . : -",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\", base_ur: \"https://x\" }",
            "cfg.yaml:3: providers.openai.base_ur: unknown key (expected one of: allow_private_urls, api_key, base_url, max_connections, stream_usage, timeouts, token_delay_ms, type)",
        ),
        (
            "routing:",
            "routes:",
            "cfg.yaml:8: routes: unknown key (expected one of: api_keys, limits, listen, log_format, models, pricing, providers, routing, timeouts)",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\", base_url: \"ftp://x\" }",
            "cfg.yaml:3: providers.openai.base_url: must be an http:// or https:// URL",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\", timeouts: { connect: 0 } }",
            "cfg.yaml:3: providers.openai.timeouts.connect: must be positive",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { type: foo }",
            "cfg.yaml:3: providers.openai.type: unknown provider type 'foo' (openai, anthropic, gemini, mistral, groq, echo)",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\", allow_private_urls: true }",
            "cfg.yaml:3: providers.openai.allow_private_urls: only the gemini provider has it",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\", stream_usage: maybe }",
            "cfg.yaml:3: providers.openai.stream_usage: must be true or false",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }\n  gemini: { api_key: \"\" }",
            "cfg.yaml:4: providers.gemini.api_key: is required for this provider type",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }\n  gq: { type: openai, base_url: \"https://api.groq.com/openai/v1\" }",
            "cfg.yaml:4: providers.gq.api_key: is required for api.groq.com",
        ),
        (
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }",
            "  openai: { api_key: \"${OPENAI_API_KEY}\" }\n  openai: { api_key: \"x\" }",
            "cfg.yaml:4: providers.openai: duplicate key",
        ),
        (
            '"gpt-4o": { provider: "openai", model: "gpt-4o" }',
            '"gpt-4o": { provider: "openai", model: "gpt-4o", model: "gpt-4" }',
            "cfg.yaml:6: models.gpt-4o.model: duplicate key",
        ),
    ],
)
def test_invalid_configs_fail_with_one_line(old: str, new: str, expected: str) -> None:
    """Each bad config names the file, line and key path, and never a secret value."""
    assert old in BASE
    assert error_of(BASE.replace(old, new)) == expected


def test_top_level_timeouts_and_non_positive() -> None:
    """Global timeouts apply to providers unless overridden; non-positive ones are refused."""
    config = load(BASE + "timeouts: { connect: 2, stream_idle: 5 }\n")
    assert config.providers["openai"].timeouts.connect == 2
    assert config.providers["openai"].timeouts.stream_idle == 5
    assert config.providers["openai"].timeouts.total == 900
    assert error_of(BASE + "timeouts: { total: -1 }\n") == "cfg.yaml:14: timeouts.total: must be positive"


def test_anthropic_requires_key_but_openai_compatible_may_omit() -> None:
    """A literal empty key is refused for Anthropic; OpenAI-compatible servers may have none."""
    text = BASE.replace('api_key: "${ANTHROPIC_API_KEY}", ', "")
    assert error_of(text) == "cfg.yaml:4: providers.anthropic.api_key: is required for this provider type"
    local = load(BASE.replace('openai: { api_key: "${OPENAI_API_KEY}" }', 'openai: { base_url: "http://vllm:8000/v1" }'))
    assert local.providers["openai"].enabled and local.providers["openai"].api_key == ""


def test_glob_allowed_models_are_checked() -> None:
    """Glob patterns are accepted when some alias or prefix can match them."""
    config = load(BASE.replace('["claude-sonnet", "gpt-4o"]', '["claude-*", "gpt-4?"]'))
    assert config.api_keys[1].allowed_models == ("claude-*", "gpt-4?")
    assert error_of(BASE.replace('["claude-sonnet", "gpt-4o"]', '["mistral-*"]')).endswith(
        "'mistral-*' matches no alias and no routing prefix"
    )


def test_yaml_syntax_error_names_the_line() -> None:
    """Broken YAML is reported as one line with its position."""
    assert error_of("listen: [\n") .startswith("cfg.yaml:2: invalid YAML")
    assert error_of("") == "cfg.yaml: the file is empty"
    assert error_of("- a\n") == "cfg.yaml:1: <top>: must be a mapping"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8080", ("", 8080)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:9", ("127.0.0.1", 9)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:80", ("localhost", 80)),
        ("8080", None),
        (":99999", None),
        ("[::1]8080", None),
    ],
)
def test_listen_forms(text: str, expected: tuple[str, int] | None) -> None:
    """The documented listen forms parse; anything else is refused."""
    assert parse_listen(text) == expected


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_yaml_fragments = st.sampled_from(
    ["listen:", "providers:", "models:", "routing:", "api_keys:", "timeouts:", "- ", "  ", "{", "}", "[", "]",
     ":", "${X}", "${", "&a", "*a", "!!python/object:os.system", "key: k", "0", "-1", "\n", "\t", "'", '"', "?", "|"]
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.lists(_yaml_fragments, max_size=30).map("".join), st.binary(max_size=120)))
def test_loader_raises_only_config_errors(text: str | bytes) -> None:
    """Random YAML-ish text and bytes: the loader accepts or raises ConfigError, nothing else."""
    try:
        load(text if isinstance(text, str) else text.decode("latin-1"))
    except ConfigError as e:
        assert "\n" not in str(e)


def test_provider_types_default_to_their_name_and_known_hosts_get_their_dialect() -> None:
    """gemini/mistral/groq need no `type`; `type: openai` on Groq's or Mistral's host gets their
    fixes; several providers of one type live under different names."""
    extra = (
        '  gemini: { api_key: "g-key" }\n'
        '  mistral: { api_key: "m-key" }\n'
        '  fast-groq: { type: openai, api_key: "q-key", base_url: "https://api.groq.com/openai/v1" }\n'
        '  local-vllm: { type: openai, base_url: "http://vllm:8000/v1", api_key: "", stream_usage: false }\n'
    )
    anchor = '  anthropic: { api_key: "${ANTHROPIC_API_KEY}", base_url: "https://api.anthropic.com/v1" }\n'
    assert anchor in BASE
    config = load(BASE.replace(anchor, anchor + extra))
    providers = config.providers
    assert (providers["gemini"].type, providers["gemini"].base_url) == ("gemini", "https://generativelanguage.googleapis.com/v1beta")
    assert (providers["mistral"].type, providers["mistral"].base_url) == ("mistral", "https://api.mistral.ai/v1")
    assert providers["fast-groq"].type == "groq"
    local = providers["local-vllm"]
    assert (local.type, local.api_key, local.stream_usage, local.enabled) == ("openai", "", False, True)
