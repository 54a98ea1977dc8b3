"""Chat Completions request -> Anthropic Messages request (translation.md section A). Pure.

Lenient by decision: fields without an equivalent are dropped, out-of-range numbers clamped,
fixable message structure repaired; a 400 with a real `param` only where the request cannot be
honoured (n>1, custom tools, file ids, unsupported image types, unparsable tool arguments).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from gatewaylib.errors import InvalidRequest
from gatewaylib.providers.chatinput import (
    DATA_URL,
    assistant_texts,
    assistant_tool_calls,
    clean_stop,
    is_number,
    positive_int,
    text_of_parts,
    tool_arguments,
    user_parts,
)

DEFAULT_MAX_TOKENS = 4096
#: reasoning_effort -> thinking budget_tokens (translation.md settled decisions).
THINKING_BUDGETS = {"low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
JSON_TOOL = "json_tool_call"
MISSING_RESULT = "no result was provided"

_ILLEGAL_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
# Models with native structured outputs (output_config.format): Claude 4.5 and later.
_STRUCTURED_OUTPUT_MODEL = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-)?(?:4[-.][5-9]|[5-9])")


@dataclass
class RequestPlan:
    """The translated body plus what the response side must know about it."""

    body: dict[str, Any]
    #: response_format was mapped onto a forced tool: unwrap its input into content.
    json_tool: bool = False
    #: thinking was requested: expose reasoning_content / thinking_blocks.
    thinking: bool = False
    #: the client used legacy `functions`: answer with `function_call`.
    legacy_functions: bool = False
    warnings: list[str] = field(default_factory=list)


def sanitize_tool_id(tool_id: str) -> str:
    """Anthropic ids must match ^[a-zA-Z0-9_-]+$; one deterministic mapping for both sides."""
    clean = _ILLEGAL_ID_CHARS.sub("_", tool_id)
    return clean or "toolu_empty"


# --------------------------------------------------------------------------------------------
# Content parts (A.4)


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url needs a 'url'.", param=param)
    if url.startswith("data:"):
        match = DATA_URL.fullmatch(url)
        if not match:
            raise InvalidRequest("The image data URL is not base64 encoded.", param=param)
        media_type, data = match.group(1).lower(), match.group(2)
        if media_type == "application/pdf":
            return {
                "type": "document",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
        if media_type not in IMAGE_TYPES:
            raise InvalidRequest(
                f"Unsupported image type '{media_type}': use jpeg, png, gif or webp.", param=param
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url must be an http(s) URL or a base64 data URL.", param=param)


def _file_block(file: Any, param: str) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise InvalidRequest("'file' must be an object.", param=param)
    if file.get("file_id") and not file.get("file_data"):
        raise InvalidRequest(
            "File ids (OpenAI Files API) cannot be sent to this model; inline 'file_data'.",
            param=f"{param}.file_id",
        )
    data = file.get("file_data")
    match = DATA_URL.fullmatch(data) if isinstance(data, str) else None
    if not match:
        raise InvalidRequest("'file_data' must be a base64 data URL.", param=f"{param}.file_data")
    media_type = match.group(1).lower()
    if media_type == "application/pdf":
        return {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": match.group(2)},
        }
    if media_type in IMAGE_TYPES:
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": match.group(2)},
        }
    if media_type.startswith("text/"):
        import base64
        import binascii

        try:
            text = base64.b64decode(match.group(2)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest(
                "'file_data' is not valid base64 text.", param=f"{param}.file_data"
            ) from None
        return {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": text},
        }
    raise InvalidRequest(f"Unsupported file type '{media_type}'.", param=f"{param}.file_data")


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for kind, part, p in user_parts(content, param):
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            image = _image_block(part.get("image_url"), f"{p}.image_url")
            if "cache_control" in part:
                image["cache_control"] = part["cache_control"]
            blocks.append(image)
        elif kind == "file":
            blocks.append(_file_block(part.get("file"), f"{p}.file"))
        elif kind == "input_audio":
            continue  # no equivalent: dropped (translation.md A.4)
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"{p}.type")
    return blocks


# --------------------------------------------------------------------------------------------
# Messages (A.3)


def _assistant_blocks(
    message: dict[str, Any], index: int, legacy_ids: list[str]
) -> list[dict[str, Any]]:
    param = f"messages[{index}]"
    blocks: list[dict[str, Any]] = []
    thinking = message.get("thinking_blocks")
    if isinstance(thinking, list):
        blocks.extend(
            b
            for b in thinking
            if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")
        )
    blocks.extend({"type": "text", "text": text} for text in assistant_texts(message, param))
    for call_id, name, args in assistant_tool_calls(message, param):
        blocks.append(
            {"type": "tool_use", "id": sanitize_tool_id(call_id), "name": name, "input": args}
        )
    function_call = message.get("function_call")
    if isinstance(function_call, dict) and isinstance(function_call.get("name"), str):
        digest = hashlib.sha256(function_call["name"].encode()).hexdigest()[:8]
        call_id = f"call_fn_{len(legacy_ids)}_{digest}"
        legacy_ids.append(call_id)
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": function_call["name"],
                "input": tool_arguments(
                    function_call.get("arguments"), f"{param}.function_call.arguments"
                ),
            }
        )
    return blocks


def _tool_result(message: dict[str, Any], index: int, tool_use_id: str) -> dict[str, Any]:
    param = f"messages[{index}].content"
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    content = message.get("content")
    if isinstance(content, list):
        parts = _user_blocks(content, param)
        if parts:
            block["content"] = parts
    else:
        text = text_of_parts(content, param)
        if text:
            block["content"] = text
    if message.get("is_error") is True:
        block["is_error"] = True
    return block


def convert_messages(
    messages: list[Any],
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """-> (system text blocks or None, Anthropic messages)."""
    system_parts: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    legacy_ids: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        param = f"messages[{index}]"
        if role in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                for i, part in enumerate(content):
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "text"
                        and isinstance(part.get("text"), str)
                    ):
                        block = {"type": "text", "text": part["text"]}
                        if "cache_control" in part:
                            block["cache_control"] = part["cache_control"]
                        system_parts.append(block)
                    elif not isinstance(part, dict) or part.get("type") != "text":
                        raise InvalidRequest(
                            "System messages may only contain text.", param=f"{param}.content[{i}]"
                        )
            else:
                system_parts.append(
                    {"type": "text", "text": text_of_parts(content, f"{param}.content")}
                )
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{param}.content")
            turn_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, index, legacy_ids)
            turn_role = "assistant"
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    "Tool messages need a 'tool_call_id'.", param=f"{param}.tool_call_id"
                )
            blocks = [_tool_result(message, index, sanitize_tool_id(call_id))]
            turn_role = "user"
        elif role == "function":
            if not legacy_ids:
                raise InvalidRequest("A function message must follow a function_call.", param=param)
            blocks = [_tool_result(message, index, legacy_ids[-1])]
            turn_role = "user"
        else:
            raise InvalidRequest(f"Unsupported message role {role!r}.", param=f"{param}.role")
        if not blocks:
            continue  # A.3 step 3: a message left with no blocks is removed
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    system = [p for p in system_parts if p["text"]] or None
    return system, turns


def repair_tool_pairing(turns: list[dict[str, Any]]) -> None:
    """A.3 steps 5 and 6: tool_results first in a user turn, one for every tool_use before it."""
    for i, turn in enumerate(turns):
        if turn["role"] == "user":
            results = [b for b in turn["content"] if b["type"] == "tool_result"]
            if results:
                previous = turns[i - 1] if i > 0 else None
                known = {
                    b["id"]
                    for b in (
                        previous["content"] if previous and previous["role"] == "assistant" else []
                    )
                    if b["type"] == "tool_use"
                }
                for result in results:
                    if result["tool_use_id"] not in known:
                        raise InvalidRequest(
                            f"The tool result for '{result['tool_use_id']}' answers no tool call "
                            "in the preceding assistant message.",
                            param="messages",
                        )
                turn["content"] = results + [
                    b for b in turn["content"] if b["type"] != "tool_result"
                ]
            continue
        ids = [b["id"] for b in turn["content"] if b["type"] == "tool_use"]
        if not ids:
            continue
        following = turns[i + 1] if i + 1 < len(turns) else None
        if following is None or following["role"] != "user":
            following = {"role": "user", "content": []}
            turns.insert(i + 1, following)
        answered = {
            b.get("tool_use_id") for b in following["content"] if b["type"] == "tool_result"
        }
        missing = [
            {"type": "tool_result", "tool_use_id": tid, "is_error": True, "content": MISSING_RESULT}
            for tid in ids
            if tid not in answered
        ]
        if missing:
            results = [b for b in following["content"] if b["type"] == "tool_result"]
            others = [b for b in following["content"] if b["type"] != "tool_result"]
            following["content"] = results + missing + others


# --------------------------------------------------------------------------------------------
# Tools (A.5)


def _tool_definition(function: Any, param: str) -> dict[str, Any]:
    if (
        not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
        or not function["name"]
    ):
        raise InvalidRequest("A function tool needs a 'name'.", param=param)
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise InvalidRequest(
            "'parameters' must be a JSON Schema object.", param=f"{param}.parameters"
        )
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    tool: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        tool["description"] = function["description"]
    tool["input_schema"] = schema
    return tool


def convert_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool]:
    """-> (Anthropic tools or None, whether the legacy `functions` field was used)."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array.", param="tools")
        out = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise InvalidRequest("Each tool must be an object.", param=f"tools[{i}]")
            if tool.get("type") != "function":
                raise InvalidRequest(
                    f"Tool type {tool.get('type')!r} is not supported here; only function tools.",
                    param=f"tools[{i}].type",
                )
            out.append(_tool_definition(tool.get("function"), f"tools[{i}].function"))
        return out or None, False
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise InvalidRequest("'functions' must be an array.", param="functions")
        return [
            _tool_definition(f, f"functions[{i}]") for i, f in enumerate(functions)
        ] or None, True
    return None, False


def convert_tool_choice(
    body: dict[str, Any], tools: list[dict[str, Any]] | None
) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
    """-> (Anthropic tool_choice or None, tools possibly narrowed by allowed_tools)."""
    choice = body.get("tool_choice", body.get("function_call"))
    mapped: dict[str, Any] | None
    if choice is None:
        mapped = None
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = {
            t.get("function", {}).get("name")
            if isinstance(t.get("function"), dict)
            else t.get("name")
            for t in (allowed.get("tools") or [])
            if isinstance(t, dict)
        }
        if tools is not None:
            tools = [t for t in tools if t["name"] in names]
        mapped = {"type": "any"} if allowed.get("mode") == "required" else {"type": "auto"}
    elif isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice must name a function.", param="tool_choice")
        mapped = {"type": "tool", "name": name}
    else:
        raise InvalidRequest("Unsupported 'tool_choice' value.", param="tool_choice")
    parallel = body.get("parallel_tool_calls")
    if parallel is False and (mapped is None or mapped["type"] != "none"):
        mapped = dict(mapped or {"type": "auto"})
        mapped["disable_parallel_tool_use"] = True
    return mapped, tools


# --------------------------------------------------------------------------------------------
# The whole request


def supports_structured_output(model: str) -> bool:
    return bool(_STRUCTURED_OUTPUT_MODEL.search(model))


def translate_request(
    body: dict[str, Any],
    upstream_model: str,
    *,
    default_max_tokens: int | None = None,
    stream: bool = False,
) -> RequestPlan:
    """Build the Anthropic Messages body for a validated chat request."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("This model supports only n=1.", param="n")
    messages = body.get("messages")
    assert isinstance(messages, list)
    system, turns = convert_messages(messages)
    if not turns:
        raise InvalidRequest(
            "The conversation has no user or assistant messages.", param="messages"
        )
    repair_tool_pairing(turns)

    out: dict[str, Any] = {"model": upstream_model}
    plan = RequestPlan(out)
    max_tokens: int = (
        positive_int(body, "max_completion_tokens")
        or positive_int(body, "max_tokens")
        or default_max_tokens
        or DEFAULT_MAX_TOKENS
    )
    if system is not None:
        out["system"] = (
            system
            if any("cache_control" in p for p in system)
            else "\n".join(p["text"] for p in system)
        )

    tools, plan.legacy_functions = convert_tools(body)
    tool_choice, tools = convert_tool_choice(body, tools)

    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise InvalidRequest("'response_format' must be an object.", param="response_format")
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise InvalidRequest(
                    "json_schema needs a 'schema' object.", param="response_format.json_schema"
                )
            schema = spec.get("schema") or {"type": "object"}
            if supports_structured_output(upstream_model):
                out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
            else:
                tools, tool_choice = _json_tool(tools, schema)
                plan.json_tool = True
        elif kind == "json_object":
            tools, tool_choice = _json_tool(
                tools, {"type": "object", "additionalProperties": True, "properties": {}}
            )
            plan.json_tool = True
        elif kind not in ("text", None):
            raise InvalidRequest(
                f"Unsupported response_format type {kind!r}.", param="response_format.type"
            )

    if tools is None and any(
        b["type"] in ("tool_use", "tool_result") for turn in turns for b in turn["content"]
    ):
        # A.3 step 8: history holds tool blocks but no tools were sent: declare them, use none.
        names = sorted(
            {b["name"] for turn in turns for b in turn["content"] if b["type"] == "tool_use"}
        )
        tools = [{"name": name, "input_schema": {"type": "object"}} for name in names]
        tool_choice = {"type": "none"}
    if tools is not None:
        out["tools"] = tools
    if tool_choice is not None:
        out["tool_choice"] = tool_choice

    # Sampling.
    temperature = body.get("temperature")
    if temperature is not None:
        if not is_number(temperature) or temperature < 0:
            raise InvalidRequest(
                "'temperature' must be a number between 0 and 2.", param="temperature"
            )
        if temperature > 1:
            plan.warnings.append(f"temperature {temperature} clamped to 1")
        out["temperature"] = min(float(temperature), 1.0) if temperature > 1 else temperature
    top_p = body.get("top_p")
    if top_p is not None:
        if not is_number(top_p):
            raise InvalidRequest("'top_p' must be a number.", param="top_p")
        out["top_p"] = top_p
    if is_number(body.get("top_k")):
        out["top_k"] = body["top_k"]
    stop = clean_stop(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop

    user = body.get("user")
    if isinstance(user, str) and user and "@" not in user and len(user) <= 256:
        out["metadata"] = {"user_id": user}

    # Thinking (A.7).
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest("'reasoning_effort' must be a string.", param="reasoning_effort")
    if thinking is None and effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
        thinking = {"type": "enabled", "budget_tokens": budget}
        if max_tokens <= budget:
            max_tokens = budget + max_tokens
    elif (
        effort is not None and effort not in THINKING_BUDGETS and effort not in ("none", "minimal")
    ):
        raise InvalidRequest(f"Unsupported reasoning_effort {effort!r}.", param="reasoning_effort")
    if thinking is not None:
        forced = isinstance(out.get("tool_choice"), dict) and out["tool_choice"].get("type") in (
            "any",
            "tool",
        )
        prefill = turns[-1]["role"] == "assistant"
        if forced or prefill:
            plan.warnings.append("thinking disabled: incompatible with forced tool use or prefill")
        else:
            out["thinking"] = thinking
            plan.thinking = True
            out.pop("temperature", None)
            out.pop("top_k", None)
            if "top_p" in out and not 0.95 <= out["top_p"] <= 1:
                out.pop("top_p")
            requested = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            if isinstance(requested, int) and max_tokens <= requested:
                max_tokens = requested + max_tokens

    # A.3 step 11: a final assistant turn is a prefill; it cannot end in whitespace.
    last = turns[-1]
    if last["role"] == "assistant":
        texts = [b for b in last["content"] if b["type"] == "text"]
        if texts:
            texts[-1]["text"] = texts[-1]["text"].rstrip()
            if not texts[-1]["text"]:
                last["content"].remove(texts[-1])
                if not last["content"]:
                    turns.pop()

    out["max_tokens"] = max_tokens
    out["messages"] = turns
    if stream:
        out["stream"] = True
    return plan


def _json_tool(
    tools: list[dict[str, Any]] | None, schema: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tool = {
        "name": JSON_TOOL,
        "description": "Respond with a JSON object matching this schema.",
        "input_schema": schema if "type" in schema else {"type": "object", **schema},
    }
    return [*(tools or []), tool], {"type": "tool", "name": JSON_TOOL}
