"""Reading the parts of a Chat Completions request that every translating provider needs.

Pure helpers shared by the Anthropic and Gemini request translators, so both read message
text, tool arguments, stop lists and data URLs the same way and fail with the same `param`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.errors import InvalidRequest

DATA_URL = re.compile(r"data:([^;,]+)(?:;[^,]*)?;base64,(.*)", re.DOTALL)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def text_of_parts(content: Any, param: str) -> str:
    """Join the text of a string or a list of text parts (system messages, tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest(
                        "text parts need a string 'text'.", param=f"{param}[{i}].text"
                    )
                texts.append(text)
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    raise InvalidRequest("'content' must be a string or an array of parts.", param=param)


def tool_arguments(arguments: Any, param: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise InvalidRequest("Tool call arguments must be a JSON string.", param=param)
    try:
        value = jsonutil.loads(arguments)
    except jsonutil.JSONError:
        raise InvalidRequest("Tool call arguments are not valid JSON.", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest("Tool call arguments must encode a JSON object.", param=param)
    return value


def user_parts(content: Any, param: str) -> Iterator[tuple[Any, dict[str, Any], str]]:
    """A user message's content as checked parts: (type, part, the part's `param`).

    A string, as the whole content or as one part, is a text part; empty text is skipped; what
    each type holds beyond text is for the translator to read and refuse.
    """
    if content is None:
        return
    if isinstance(content, str):
        if content:
            yield "text", {"type": "text", "text": content}, param
        return
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of parts.", param=param)
    for i, part in enumerate(content):
        p = f"{param}[{i}]"
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        elif not isinstance(part, dict):
            raise InvalidRequest("Content parts must be objects.", param=p)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest("text parts need a string 'text'.", param=f"{p}.text")
            if not text:
                continue
        yield kind, part, p


def assistant_texts(message: dict[str, Any], param: str) -> list[str]:
    """The non-empty texts of an assistant message's content (refusal and other parts, which
    an assistant turn cannot carry back upstream, are ignored)."""
    content = message.get("content")
    if isinstance(content, str):
        return [content] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(
            "'content' must be a string, an array or null.", param=f"{param}.content"
        )
    texts = []
    for i, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(
                    "text parts need a string 'text'.", param=f"{param}.content[{i}].text"
                )
            if text:
                texts.append(text)
    return texts


def assistant_tool_calls(
    message: dict[str, Any], param: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """An assistant message's `tool_calls` as (id, function name, parsed arguments)."""
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise InvalidRequest("'tool_calls' must be an array.", param=f"{param}.tool_calls")
    calls = []
    for j, call in enumerate(tool_calls):
        cp = f"{param}.tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise InvalidRequest("A tool call needs a 'function' object.", param=cp)
        function = call["function"]
        call_id, name = call.get("id"), function.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest("A tool call needs an 'id'.", param=f"{cp}.id")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("A tool call needs a function name.", param=f"{cp}.function.name")
        args = tool_arguments(function.get("arguments"), f"{cp}.function.arguments")
        calls.append((call_id, name, args))
    return calls


def clean_stop(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("'stop' must be a string or an array of strings.", param="stop")
    kept = [s for s in stop if s.strip()]
    return kept or None
