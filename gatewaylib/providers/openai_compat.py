"""Dialects of OpenAI-compatible servers that need small fixes (translation.md F.6).

Each dialect is a few pure functions on top of the OpenAI pass-through provider, so the quirks of
one server never leak into the code path of another.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.errors import GatewayError, InvalidRequest, from_upstream_status
from gatewaylib.providers.base import Call
from gatewaylib.providers.openai import Dialect, openai_error

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")

#: The request fields Mistral's chat endpoint accepts (it answers 422 to any other).
MISTRAL_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)
_MISTRAL_MESSAGE_FIELDS = {
    "system": ("role", "content"),
    "user": ("role", "content"),
    "assistant": ("role", "content", "tool_calls", "prefix"),
    "tool": ("role", "content", "tool_call_id", "name"),
}
MISTRAL_FINISH = {"model_length": "length"}


def mistral_tool_id(original: str) -> str:
    """A deterministic 9-character alphanumeric id: Mistral rejects any other shape."""
    if _MISTRAL_ID.fullmatch(original):
        return original
    number = int.from_bytes(hashlib.sha256(original.encode("utf-8")).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


class MistralDialect(Dialect):
    """Mistral: a field whitelist, 9-character tool ids, `model_length`, usage on the finish
    chunk instead of `stream_options`, and FastAPI-style 422 errors."""

    name = "mistral"
    stream_options = False
    rewrites = True

    def fix_request(self, body: dict[str, Any], call: Call) -> dict[str, Any]:
        ids: dict[str, str] = {}
        out = {k: v for k, v in body.items() if k in MISTRAL_FIELDS}
        if "max_tokens" not in out and body.get("max_completion_tokens") is not None:
            out["max_tokens"] = body["max_completion_tokens"]
        if "random_seed" not in out and body.get("seed") is not None:
            out["random_seed"] = body["seed"]
        messages = body.get("messages")
        if isinstance(messages, list):
            out["messages"] = [self._message(m, ids) for m in messages]
        call.extras["mistral_ids"] = ids
        return out

    def _message(self, message: Any, ids: dict[str, str]) -> Any:
        if not isinstance(message, dict):
            return message
        role = "system" if message.get("role") == "developer" else message.get("role")
        fields = _MISTRAL_MESSAGE_FIELDS.get(str(role))
        if fields is None:
            return message  # unknown roles are the upstream's to reject
        out = {k: message[k] for k in fields if k in message}
        out["role"] = role

        def short(original: Any) -> Any:
            if not isinstance(original, str):
                return original
            new = mistral_tool_id(original)
            ids[new] = original
            return new

        if isinstance(out.get("tool_calls"), list):
            out["tool_calls"] = [
                {
                    **{k: v for k, v in c.items() if k in ("id", "type", "function")},
                    "id": short(c.get("id")),
                }
                if isinstance(c, dict)
                else c
                for c in out["tool_calls"]
            ]
        if "tool_call_id" in out:
            out["tool_call_id"] = short(out["tool_call_id"])
        return out

    def _fix_choice(self, choice: Any, call: Call, key: str) -> Any:
        if not isinstance(choice, dict):
            return choice
        choice = dict(choice)
        reason = choice.get("finish_reason")
        if reason == "error":
            raise GatewayError(
                "mistral stopped generating with an error",
                status=502,
                type="server_error",
                code="upstream_error",
                provider_error="upstream_5xx",
            )
        if reason in MISTRAL_FINISH:
            choice["finish_reason"] = MISTRAL_FINISH[reason]
        message = choice.get(key)
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            ids: dict[str, str] = call.extras.get("mistral_ids", {})
            counter = call.extras.setdefault("mistral_tool_index", {})
            calls = []
            for tool_call in message["tool_calls"]:
                if isinstance(tool_call, dict):
                    tool_call = dict(tool_call)
                    if tool_call.get("id") in ids:
                        tool_call["id"] = ids[tool_call["id"]]
                    if key == "delta" and "index" not in tool_call:
                        n = choice.get("index", 0)
                        tool_call["index"] = counter.get(n, 0)
                        counter[n] = tool_call["index"] + 1
                calls.append(tool_call)
            choice[key] = {**message, "tool_calls": calls}
        return choice

    def fix_response(self, obj: dict[str, Any], call: Call) -> dict[str, Any]:
        choices = obj.get("choices")
        if isinstance(choices, list):
            obj = {**obj, "choices": [self._fix_choice(c, call, "message") for c in choices]}
        return obj

    def fix_chunk(self, obj: dict[str, Any], call: Call) -> dict[str, Any]:
        choices = obj.get("choices")
        if isinstance(choices, list) and choices:
            obj = {**obj, "choices": [self._fix_choice(c, call, "delta") for c in choices]}
        return obj

    def map_error(
        self, provider: str, status: int, headers: dict[str, str], body: bytes
    ) -> GatewayError:
        return mistral_error(provider, status, headers, body)


def _detail_message(detail: list[Any]) -> tuple[str, str | None]:
    """FastAPI's `{"detail":[{"loc":[...],"msg":...}]}` -> (message, param of the first)."""
    messages, param = [], None
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc") or [] if p != "body"]
        where = ".".join(loc)
        if param is None and where:
            param = where
        messages.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(messages) or "the request was rejected", param


def mistral_error(provider: str, status: int, headers: dict[str, str], body: bytes) -> GatewayError:
    try:
        obj = jsonutil.loads(body)
    except jsonutil.JSONError:
        obj = None
    if not isinstance(obj, dict):
        return from_upstream_status(status, headers, None, provider=provider)
    detail = obj.get("detail")
    message = obj.get("message")
    if isinstance(message, dict) and isinstance(message.get("detail"), list):
        detail = message["detail"]
    if isinstance(detail, list):
        text, param = _detail_message(detail)
        return from_upstream_status(
            400 if status == 422 else status, headers, text, param=param, provider=provider
        )
    if isinstance(message, str):
        code = obj.get("code")
        param = obj.get("param")
        return from_upstream_status(
            status,
            headers,
            message,
            code=code if isinstance(code, str) and status != 429 else None,
            param=param if isinstance(param, str) else None,
            provider=provider,
        )
    return openai_error(provider, status, headers, body)


#: Request fields Groq answers 400 to (translation.md F.6).
GROQ_UNSUPPORTED = ("logprobs", "logit_bias", "top_logprobs")


class GroqDialect(Dialect):
    """Groq: strip the fields it rejects; only n=1. Responses stay on the fast path."""

    name = "groq"

    def fix_request(self, body: dict[str, Any], call: Call) -> dict[str, Any]:
        n = body.get("n")
        if n is not None and n != 1:
            raise InvalidRequest("This model supports only n=1.", param="n")
        out = {k: v for k, v in body.items() if k not in GROQ_UNSUPPORTED}
        messages = out.get("messages")
        if isinstance(messages, list):
            out["messages"] = [
                {k: v for k, v in m.items() if k != "name"} if isinstance(m, dict) else m
                for m in messages
            ]
        return out


DIALECTS: dict[str, type[Dialect]] = {"mistral": MistralDialect, "groq": GroqDialect}
