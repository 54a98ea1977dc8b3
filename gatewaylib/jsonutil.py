"""JSON in and out, in one place so the encoder can be swapped for a faster one.

Client bodies are decoded strictly: duplicate keys and NaN/Infinity are refused, because two
parsers disagreeing on `{"model":"a","model":"b"}` is how allow-lists get bypassed.
"""

from __future__ import annotations

import json
from typing import Any


class JSONError(ValueError):
    """The body is not acceptable JSON; the message says why (never echoing the body)."""


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, the form OpenAI itself sends."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


_strict = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def loads_strict(data: bytes) -> Any:
    """Decode a client body; raise JSONError for anything a strict JSON parser refuses."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONError("the body is not valid UTF-8") from None
    try:
        return _strict.decode(text)
    except RecursionError:
        raise JSONError("the body is nested too deeply") from None
    except json.JSONDecodeError as e:
        raise JSONError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def loads(data: bytes | str) -> Any:
    """Decode trusted-shape JSON (upstream bodies); raise JSONError on failure."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise JSONError(str(e)) from None
