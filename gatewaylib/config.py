"""Load, expand, validate and freeze the gateway's YAML configuration.

Every failure is a `ConfigError` whose message is one line naming the file, the line and the key
path, and never the secret value: operators read it in a crash-looping pod's log.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

#: Provider types litegate can speak, and the default base URL of each (None: must be given).
PROVIDER_TYPES: Mapping[str, str | None] = MappingProxyType(
    {
        "openai": "https://api.openai.com/v1",
        "anthropic": "https://api.anthropic.com/v1",
        "gemini": "https://generativelanguage.googleapis.com/v1beta",
        "mistral": "https://api.mistral.ai/v1",
        "groq": "https://api.groq.com/openai/v1",
        "echo": None,
    }
)
#: Types whose upstream refuses requests without a key: an empty key disables the provider.
_KEY_REQUIRED = frozenset({"anthropic", "gemini", "mistral", "groq"})
#: OpenAI-compatible hosts with quirks: `type: openai` pointed at one gets its adapter.
_KNOWN_OPENAI_HOSTS = MappingProxyType({"api.mistral.ai": "mistral", "api.groq.com": "groq"})

MIN_VIRTUAL_KEY_LENGTH = 16

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem; `str()` is the single line to print."""


@dataclass(frozen=True)
class Timeouts:
    """Deadlines in seconds (see reliability.md, Timeouts). The upstream ones can be set per
    provider; the client-side and shutdown ones only globally."""

    connect: float = 10.0
    response_headers: float = 600.0
    first_event: float = 120.0
    stream_idle: float = 120.0
    total: float = 900.0
    # Client side (global only):
    request_headers: float = 10.0
    request_body: float = 60.0
    keepalive: float = 60.0
    # Shutdown (global only): stop accepting after `shutdown_delay`, give up at `drain`.
    shutdown_delay: float = 1.0
    drain: float = 25.0


#: Timeouts a provider may override.
UPSTREAM_TIMEOUTS = frozenset(
    {"connect", "response_headers", "first_event", "stream_idle", "total"}
)


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 20 * 1024 * 1024
    max_concurrent_requests: int = 1024


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str
    api_key: str = field(repr=False, default="")
    enabled: bool = True
    max_connections: int = 256
    token_delay: float = 0.0
    timeouts: Timeouts = Timeouts()
    #: OpenAI-compatible servers: send `stream_options.include_usage` (some servers reject it).
    stream_usage: bool = True
    #: Gemini: may image URLs that resolve to private/loopback addresses be downloaded?
    allow_private_urls: bool = False


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True)
class ModelAlias:
    alias: str
    provider: str
    model: str
    max_tokens: int | None = None
    pricing: Price | None = None


@dataclass(frozen=True)
class PrefixRule:
    prefix: str
    provider: str


@dataclass(frozen=True)
class VirtualKeyConfig:
    key: str = field(repr=False)
    app: str
    allowed_models: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    path: str
    listen_host: str
    listen_port: int
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelAlias]
    routing: tuple[PrefixRule, ...]
    api_keys: tuple[VirtualKeyConfig, ...]
    timeouts: Timeouts
    limits: Limits = Limits()
    pricing: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    log_format: str = "text"
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# YAML -> plain Python, with a line number for every key path


class _Doc:
    """Converts a composed YAML node tree to Python values, remembering each path's line."""

    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.file = path
        self.env = env
        self.lines: dict[str, int] = {}
        self.emptied_env: dict[str, str] = {}

    def fail(self, path: str, message: str) -> ConfigError:
        # A missing key has no line of its own: point at the nearest enclosing one.
        probe = path
        line = self.lines.get(probe)
        while line is None and probe:
            shorter = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", probe)
            probe = shorter if shorter != probe else ""
            line = self.lines.get(probe)
        where = f"{self.file}:{line}" if line is not None else self.file
        return ConfigError(f"{where}: {path or '<top>'}: {message}")

    def convert(self, node: yaml.Node, path: str) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(path, "mapping keys must be plain strings")
                key = str(key_node.value)
                sub = f"{path}.{key}" if path else key
                self.lines[sub] = key_node.start_mark.line + 1
                if key in out:
                    raise self.fail(sub, "duplicate key")
                out[key] = self.convert(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = yaml.SafeLoader(b"").construct_object(node)
        if isinstance(value, str):
            return self.expand(value, path)
        return value

    def expand(self, text: str, path: str) -> str:
        """Expand ${VAR} and ${VAR:-default}; an unset or empty VAR without default is noted."""

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.env.get(name, "")
            if value:
                return value
            if default is not None:
                return default
            self.emptied_env[path] = name
            return ""

        expanded = _ENV_RE.sub(sub, text)
        if "${" in _ENV_RE.sub("", text):
            raise self.fail(path, "unresolved '${...}' (expected ${NAME} or ${NAME:-default})")
        return expanded


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`; raise ConfigError with one line on any problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    return parse_config(raw, path, os.environ if env is None else env)


def parse_config(raw: bytes | str, path: str, env: Mapping[str, str]) -> Config:
    doc = _Doc(path, env)
    try:
        node = yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(e, "problem", None) or "invalid YAML").splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    except ValueError as e:  # e.g. undecodable bytes
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if node is None:
        raise ConfigError(f"{path}: the file is empty")
    try:
        data = doc.convert(node, "")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(e, "problem", None) or "cannot read value").splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML value: {problem}") from None
    return _Validator(doc).build(data)


# --------------------------------------------------------------------------------------------
# Validation


class _Validator:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> ConfigError:
        return self.doc.fail(path, message)

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping")
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else key
                raise self.fail(sub, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, path: str, *, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(path, "must be a string")
        if path in self.doc.emptied_env and not allow_empty:
            raise self.fail(path, f"environment variable {self.doc.emptied_env[path]} is not set")
        if not value and not allow_empty:
            raise self.fail(path, "must not be empty")
        return value

    def number(
        self, value: Any, path: str, *, integer: bool = False, allow_zero: bool = False
    ) -> float:
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                pass
        ok_types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise self.fail(path, "must be an integer" if integer else "must be a number")
        if allow_zero and value == 0:
            return value
        if not value > 0:
            raise self.fail(path, "must not be negative" if allow_zero else "must be positive")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def price(self, value: Any, path: str) -> Price:
        spec = self.mapping(value, path, {"input", "output", "cache_read", "cache_write"})
        for required in ("input", "output"):
            if required not in spec:
                raise self.fail(path, f"{required!r} is required (USD per million tokens)")
        amounts = {
            k: float(self.number(v, f"{path}.{k}", allow_zero=True)) for k, v in spec.items()
        }
        return Price(**amounts)

    def build(self, data: Any) -> Config:
        top = self.mapping(
            data,
            "",
            {
                "listen",
                "providers",
                "models",
                "routing",
                "api_keys",
                "timeouts",
                "limits",
                "pricing",
                "log_format",
            },
        )
        host, port = self.listen(top.get("listen", ":8080"))
        timeouts = self.timeouts(top.get("timeouts", {}), "timeouts", Timeouts())
        providers = self.providers(top.get("providers"), timeouts)
        models = self.models(top.get("models", {}), providers)
        routing = self.routing(top.get("routing", []), providers)
        api_keys = self.api_keys(top.get("api_keys"), models, routing)
        raw_pricing = top.get("pricing") or {}
        if not isinstance(raw_pricing, dict):
            raise self.fail("pricing", "must be a mapping of model name to prices")
        pricing = {m: self.price(v, f"pricing.{m}") for m, v in raw_pricing.items()}
        raw_limits = self.mapping(
            top.get("limits") or {}, "limits", set(Limits.__dataclass_fields__)
        )
        limits = Limits(
            **{k: int(self.number(v, f"limits.{k}", integer=True)) for k, v in raw_limits.items()}
        )
        log_format = self.string(top.get("log_format", "text"), "log_format")
        if log_format not in ("text", "json"):
            raise self.fail("log_format", "must be 'text' or 'json'")
        return Config(
            path=self.doc.file,
            listen_host=host,
            listen_port=port,
            providers=MappingProxyType(providers),
            models=MappingProxyType(models),
            routing=routing,
            api_keys=api_keys,
            timeouts=timeouts,
            limits=limits,
            pricing=MappingProxyType(pricing),
            log_format=log_format,
            warnings=tuple(self.warnings),
        )

    def listen(self, value: Any) -> tuple[str, int]:
        parsed = parse_listen(self.string(value, "listen"))
        if parsed is None:
            raise self.fail("listen", "expected ':PORT', 'HOST:PORT' or '[IPv6]:PORT'")
        return parsed

    def timeouts(self, value: Any, path: str, base: Timeouts) -> Timeouts:
        names = set(Timeouts.__dataclass_fields__)
        allowed = names if path == "timeouts" else set(UPSTREAM_TIMEOUTS)
        raw = self.mapping(value, path, allowed)
        values = {k: self.number(v, f"{path}.{k}") for k, v in raw.items()}
        return Timeouts(**{k: values.get(k, getattr(base, k)) for k in names})

    def providers(self, value: Any, timeouts: Timeouts) -> dict[str, ProviderConfig]:
        if value is None:
            raise self.fail("providers", "is required")
        if not isinstance(value, dict) or not value:
            raise self.fail("providers", "must be a non-empty mapping of provider name to settings")
        out: dict[str, ProviderConfig] = {}
        for name, raw in value.items():
            path = f"providers.{name}"
            if raw is None:
                raw = {}
            spec = self.mapping(
                raw,
                path,
                {
                    "type",
                    "api_key",
                    "base_url",
                    "max_connections",
                    "token_delay_ms",
                    "timeouts",
                    "stream_usage",
                    "allow_private_urls",
                },
            )
            ptype = spec.get("type", name if name in PROVIDER_TYPES else None)
            if ptype is None:
                raise self.fail(path, "'type' is required for a provider with a custom name")
            if ptype not in PROVIDER_TYPES:
                kinds = ", ".join(PROVIDER_TYPES)
                raise self.fail(f"{path}.type", f"unknown provider type {ptype!r} ({kinds})")
            enabled = True
            api_key = ""
            if ptype != "echo":
                key_path = f"{path}.api_key"
                api_key = self.string(spec.get("api_key", ""), key_path, allow_empty=True)
                if key_path in self.doc.emptied_env:
                    enabled = False
                    var = self.doc.emptied_env[key_path]
                    self.warnings.append(
                        f"provider {name!r} is disabled: its api_key (${{{var}}}) is empty; "
                        f"requests routed to it get 503"
                    )
                elif not api_key and ptype in _KEY_REQUIRED:
                    raise self.fail(key_path, "is required for this provider type")
            elif "api_key" in spec:
                raise self.fail(f"{path}.api_key", "the echo provider takes no api_key")
            default_url = PROVIDER_TYPES[ptype]
            base_url = ""
            if ptype != "echo":
                base_url = self.string(spec.get("base_url", default_url), f"{path}.base_url")
                if not re.match(r"https?://[^/\s]+", base_url):
                    raise self.fail(f"{path}.base_url", "must be an http:// or https:// URL")
                base_url = base_url.rstrip("/")
                host = urlsplit(base_url).hostname or ""
                if ptype == "openai" and host in _KNOWN_OPENAI_HOSTS:
                    ptype = _KNOWN_OPENAI_HOSTS[host]
                    if enabled and not api_key:
                        raise self.fail(f"{path}.api_key", f"is required for {host}")
            stream_usage = True
            if "stream_usage" in spec:
                if ptype not in ("openai", "groq"):
                    raise self.fail(
                        f"{path}.stream_usage", "only OpenAI-compatible providers have it"
                    )
                stream_usage = self.boolean(spec["stream_usage"], f"{path}.stream_usage")
            allow_private = False
            if "allow_private_urls" in spec:
                if ptype != "gemini":
                    raise self.fail(f"{path}.allow_private_urls", "only the gemini provider has it")
                allow_private = self.boolean(
                    spec["allow_private_urls"], f"{path}.allow_private_urls"
                )
            delay = 0.0
            if "token_delay_ms" in spec:
                if ptype != "echo":
                    raise self.fail(f"{path}.token_delay_ms", "only the echo provider has it")
                delay = float(self.number(spec["token_delay_ms"], f"{path}.token_delay_ms")) / 1e3
            max_conn = 256
            if "max_connections" in spec:
                max_conn = int(
                    self.number(spec["max_connections"], f"{path}.max_connections", integer=True)
                )
            out[name] = ProviderConfig(
                name=name,
                type=ptype,
                base_url=base_url,
                api_key=api_key,
                enabled=enabled,
                max_connections=max_conn,
                token_delay=delay,
                timeouts=self.timeouts(spec.get("timeouts", {}), f"{path}.timeouts", timeouts),
                stream_usage=stream_usage,
                allow_private_urls=allow_private,
            )
        return out

    def provider_ref(self, value: Any, path: str, providers: Mapping[str, ProviderConfig]) -> str:
        name = self.string(value, path)
        if name not in providers:
            known = ", ".join(providers)
            raise self.fail(path, f"unknown provider {name!r} (defined: {known})")
        return name

    def models(self, value: Any, providers: Mapping[str, ProviderConfig]) -> dict[str, ModelAlias]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail("models", "must be a mapping of alias to {provider, model}")
        out: dict[str, ModelAlias] = {}
        for alias, raw in value.items():
            path = f"models.{alias}"
            spec = self.mapping(raw, path, {"provider", "model", "max_tokens", "pricing"})
            if "provider" not in spec:
                raise self.fail(path, "'provider' is required")
            provider = self.provider_ref(spec["provider"], f"{path}.provider", providers)
            model = self.string(spec.get("model", alias), f"{path}.model")
            max_tokens = None
            if "max_tokens" in spec:
                max_tokens = int(
                    self.number(spec["max_tokens"], f"{path}.max_tokens", integer=True)
                )
            pricing = self.price(spec["pricing"], f"{path}.pricing") if "pricing" in spec else None
            out[alias] = ModelAlias(alias, provider, model, max_tokens, pricing)
        return out

    def routing(
        self, value: Any, providers: Mapping[str, ProviderConfig]
    ) -> tuple[PrefixRule, ...]:
        if value is None:
            value = []
        if not isinstance(value, list):
            raise self.fail("routing", "must be a list of {prefix, provider}")
        rules = []
        for i, raw in enumerate(value):
            path = f"routing[{i}]"
            spec = self.mapping(raw, path, {"prefix", "provider"})
            for required in ("prefix", "provider"):
                if required not in spec:
                    raise self.fail(path, f"{required!r} is required")
            prefix = self.string(spec["prefix"], f"{path}.prefix")
            rules.append(
                PrefixRule(
                    prefix, self.provider_ref(spec["provider"], f"{path}.provider", providers)
                )
            )
        return tuple(rules)

    def api_keys(
        self, value: Any, models: Mapping[str, ModelAlias], rules: tuple[PrefixRule, ...]
    ) -> tuple[VirtualKeyConfig, ...]:
        if value is None:
            raise self.fail("api_keys", "is required (a list of {key, app, allowed_models})")
        if not isinstance(value, list) or not value:
            raise self.fail("api_keys", "must be a non-empty list of {key, app, allowed_models}")
        seen: dict[str, int] = {}
        out = []
        for i, raw in enumerate(value):
            path = f"api_keys[{i}]"
            spec = self.mapping(raw, path, {"key", "app", "allowed_models"})
            for required in ("key", "app", "allowed_models"):
                if required not in spec:
                    raise self.fail(path, f"{required!r} is required")
            key = self.string(spec["key"], f"{path}.key")
            if len(key) < MIN_VIRTUAL_KEY_LENGTH:
                raise self.fail(
                    f"{path}.key", f"is shorter than {MIN_VIRTUAL_KEY_LENGTH} characters"
                )
            if key in seen:
                raise self.fail(f"{path}.key", f"is the same key as api_keys[{seen[key]}].key")
            seen[key] = i
            app = self.string(spec["app"], f"{path}.app")
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", app):
                raise self.fail(f"{path}.app", "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
            allowed = spec["allowed_models"]
            if not isinstance(allowed, list) or not allowed:
                raise self.fail(f"{path}.allowed_models", "must be a non-empty list")
            patterns = []
            for j, pattern in enumerate(allowed):
                ppath = f"{path}.allowed_models[{j}]"
                pattern = self.string(pattern, ppath)
                if not _routable(pattern, models, rules):
                    raise self.fail(ppath, f"{pattern!r} matches no alias and no routing prefix")
                patterns.append(pattern)
            out.append(VirtualKeyConfig(key=key, app=app, allowed_models=tuple(patterns)))
        return tuple(out)


def parse_listen(text: str) -> tuple[str, int] | None:
    """`:8080`, `0.0.0.0:8080`, `[::1]:8080` -> (interface, port); None if malformed."""
    match = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if not match or not 0 <= int(match.group(3)) < 65536:
        return None
    return match.group(1) or match.group(2) or "", int(match.group(3))


def override_listen(config: Config, text: str) -> Config:
    """Apply `--listen` from the command line."""
    parsed = parse_listen(text)
    if parsed is None:
        raise ConfigError(f"--listen {text!r}: expected ':PORT', 'HOST:PORT' or '[IPv6]:PORT'")
    return dataclasses.replace(config, listen_host=parsed[0], listen_port=parsed[1])


def _routable(
    pattern: str, models: Mapping[str, ModelAlias], rules: tuple[PrefixRule, ...]
) -> bool:
    """Whether some model name matched by `pattern` could be routed."""
    if any(fnmatch.fnmatchcase(alias, pattern) for alias in models):
        return True
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    has_wildcard = literal != pattern
    for rule in rules:
        if literal.startswith(rule.prefix):
            return True
        if has_wildcard and rule.prefix.startswith(literal):
            return True
    return False
