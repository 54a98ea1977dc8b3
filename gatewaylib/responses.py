"""The OpenAI Responses API as an adapter over the chat pipeline (translation.md section E).

Responses request -> chat request -> any provider -> chat completion or chunks -> Response
object or Responses events. Pure: no I/O here, so every provider gets the API for free.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gatewaylib import jsonutil
from gatewaylib.chatrequest import check_forbidden, parse_json_object, require_model
from gatewaylib.errors import GatewayError, InvalidRequest
from gatewaylib.sse import named_event

BUILTIN_TOOLS = (
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "computer",
    "computer_use_preview",
    "mcp",
    "image_generation",
    "shell",
    "local_shell",
    "apply_patch",
    "custom",
)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@dataclass
class ResponsesRequest:
    """The chat body to run, plus what the Response object echoes back."""

    chat: dict[str, Any]
    model: str
    stream: bool
    echo: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Request mapping (E.1, E.2)


def _content_parts(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of parts.", param=param)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        p = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise InvalidRequest("Content parts must be objects.", param=p)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest("Text parts need a string 'text'.", param=f"{p}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            if part.get("file_id") and not part.get("image_url"):
                raise InvalidRequest(
                    "Images by file_id are not supported; use image_url.", param=f"{p}.file_id"
                )
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest("input_image needs an 'image_url'.", param=f"{p}.image_url")
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {k: part[k] for k in ("file_data", "filename", "file_id") if k in part}
            if "file_url" in part:
                raise InvalidRequest(
                    "Files by URL are not supported; use file_data.", param=f"{p}.file_url"
                )
            parts.append({"type": "file", "file": file})
        elif kind == "refusal":
            continue
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r}.", param=f"{p}.type")
    return parts


def _tool_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("function_call items need a 'call_id'.", param=f"{param}.call_id")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("function_call items need a 'name'.", param=f"{param}.name")
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise InvalidRequest("'arguments' must be a JSON string.", param=f"{param}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def input_to_messages(items: Any, instructions: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string.", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if not isinstance(items, list):
        raise InvalidRequest("'input' must be a string or an array of items.", param="input")
    # The assistant message that consecutive function_call items join (E.2), if any.
    open_assistant: dict[str, Any] | None = None
    for i, item in enumerate(items):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Input items must be objects.", param=param)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role in ("user", "system", "developer"):
                messages.append(
                    {
                        "role": role,
                        "content": _content_parts(item.get("content"), f"{param}.content"),
                    }
                )
                open_assistant = None
            elif role == "assistant":
                content = item.get("content")
                calls = []
                if isinstance(content, list):
                    calls = [
                        _tool_call(part, f"{param}.content[{j}]")
                        for j, part in enumerate(content)
                        if isinstance(part, dict) and part.get("type") == "function_call"
                    ]
                    content = [
                        p
                        for p in content
                        if not (isinstance(p, dict) and p.get("type") == "function_call")
                    ]
                parts = _content_parts(content, f"{param}.content")
                text = (
                    parts
                    if isinstance(parts, str)
                    else "".join(p["text"] for p in parts if p["type"] == "text")
                )
                message: dict[str, Any] = {"role": "assistant", "content": text or None}
                if calls:
                    message["tool_calls"] = calls
                messages.append(message)
                open_assistant = message
            else:
                raise InvalidRequest(f"Unsupported role {role!r}.", param=f"{param}.role")
        elif kind == "function_call":
            call = _tool_call(item, param)
            if open_assistant is None:
                open_assistant = {"role": "assistant", "content": None}
                messages.append(open_assistant)
            open_assistant.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    "function_call_output items need a 'call_id'.", param=f"{param}.call_id"
                )
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": _content_parts(output, f"{param}.output"),
                }
            )
            open_assistant = None
        elif kind == "reasoning":
            continue  # reasoning is not replayed to providers
        elif kind == "item_reference":
            raise InvalidRequest(
                "item_reference needs stored responses, which this gateway does not keep.",
                param=f"{param}.type",
            )
        else:
            raise InvalidRequest(f"Unsupported input item type {kind!r}.", param=f"{param}.type")
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest("Each tool must be an object.", param=f"tools[{i}]")
        kind = tool.get("type")
        if kind != "function":
            raise InvalidRequest(
                f"The built-in tool {kind!r} is not supported by this gateway.",
                param=f"tools[{i}].type",
            )
        function = {
            k: tool[k]
            for k in ("name", "description", "parameters", "strict")
            if k in tool and tool[k] is not None
        }
        if not isinstance(function.get("name"), str):
            raise InvalidRequest("Function tools need a 'name'.", param=f"tools[{i}].name")
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return {"type": "function", "function": {"name": choice.get("name")}}
        if kind == "allowed_tools":
            tools = [
                {"type": "function", "function": {"name": t.get("name")}}
                for t in choice.get("tools") or []
                if isinstance(t, dict)
            ]
            return {
                "type": "allowed_tools",
                "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools},
            }
    raise InvalidRequest("Unsupported 'tool_choice'.", param="tool_choice")


def _text_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise InvalidRequest("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequest(f"Unsupported text.format type {kind!r}.", param="text.format.type")


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    body = parse_json_object(raw)
    check_forbidden(body)
    model = require_model(body)
    for name in ("previous_response_id", "conversation"):
        if body.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' needs stored conversation state, which this gateway does not keep; "
                "send the whole input instead.",
                param=name,
            )
    if body.get("background") is True:
        raise InvalidRequest("Background responses are not supported.", param="background")
    if "input" not in body:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")

    chat: dict[str, Any] = {
        "model": model,
        "messages": input_to_messages(body["input"], body.get("instructions")),
    }
    if not chat["messages"]:
        raise InvalidRequest("'input' is empty.", param="input")
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    user = body.get("user", body.get("safety_identifier"))
    if user is not None:
        chat["user"] = user
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    echo = {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "reasoning": {
            "effort": (reasoning or {}).get("effort") if isinstance(reasoning, dict) else None,
            "summary": None,
        },
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "user": user,
        "metadata": metadata or {},
    }
    return ResponsesRequest(chat, model, stream, echo)


# --------------------------------------------------------------------------------------------
# Response object (E.3)


def usage_from_chat(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}

    def num(obj: Any, key: str) -> int:
        value = obj.get(key) if isinstance(obj, dict) else None
        return value if isinstance(value, int) else 0

    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    input_tokens, output_tokens = num(usage, "prompt_tokens"), num(usage, "completion_tokens")
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": num(prompt_details, "cached_tokens"),
            "cache_write_tokens": num(prompt_details, "cache_creation_tokens"),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": num(completion_details, "reasoning_tokens")},
        "total_tokens": input_tokens + output_tokens,
    }


def status_for(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def skeleton(
    req: ResponsesRequest, response_id: str, created_at: int, model: str
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": req.echo["instructions"],
        "max_output_tokens": req.echo["max_output_tokens"],
        "model": model,
        "output": [],
        "parallel_tool_calls": req.echo["parallel_tool_calls"],
        "previous_response_id": None,
        "reasoning": req.echo["reasoning"],
        "store": req.echo["store"],
        "temperature": req.echo["temperature"],
        "text": req.echo["text"],
        "tool_choice": req.echo["tool_choice"],
        "tools": req.echo["tools"],
        "top_p": req.echo["top_p"],
        "truncation": "disabled",
        "usage": None,
        "user": req.echo["user"],
        "metadata": req.echo["metadata"],
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}]}


def _function_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def build_response(req: ResponsesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """A whole Response object from a `chat.completion` (E.3)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(new_id("rs_"), reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(_message_item(new_id("msg_"), content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            _function_item(
                new_id("fc_"),
                call.get("id", ""),
                function.get("name", ""),
                function.get("arguments", ""),
            )
        )
    response = skeleton(
        req, new_id("resp_"), int(time.time()), str(completion.get("model") or req.model)
    )
    status, incomplete = status_for(choice.get("finish_reason"))
    response.update(
        status=status,
        incomplete_details=incomplete,
        output=output,
        usage=usage_from_chat(completion.get("usage")),
    )
    return response


# --------------------------------------------------------------------------------------------
# Streaming events (E.4, E.5)


class ResponsesEventDriver:
    """Chat chunks in, Responses events out: items strictly serialized, one id per item,
    sequence numbers 0, 1, 2, ... without gaps."""

    def __init__(self, req: ResponsesRequest, created_at: int | None = None) -> None:
        self._req = req
        self._id = new_id("resp_")
        self._created_at = int(time.time()) if created_at is None else created_at
        self._seq = 0
        self._started = False
        self._model = req.model
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._finish: str | None = None
        self._usage: Any = None
        self.ended = False

    # -- framing -------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return named_event(kind, jsonutil.dumps(payload))

    def _response(self, status: str) -> dict[str, Any]:
        response = skeleton(self._req, self._id, self._created_at, self._model)
        response["status"] = status
        response["output"] = list(self._output)
        return response

    def _start(self) -> list[bytes]:
        self._started = True
        response = self._response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    # -- items -----------------------------------------------------------------------------------

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self._output)
        kind = item["kind"]
        if kind == "message":
            text = "".join(item["text"])
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            done = _message_item(item["id"], text)
            events = [
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                ),
            ]
        elif kind == "reasoning":
            text = "".join(item["text"])
            done = _reasoning_item(item["id"], text)
            part = {"type": "summary_text", "text": text}
            events = [
                self._event(
                    "response.reasoning_summary_text.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    text=text,
                ),
                self._event(
                    "response.reasoning_summary_part.done",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part=part,
                ),
            ]
        else:
            arguments = "".join(item["text"])
            done = _function_item(item["id"], item["call_id"], item["name"], arguments)
            events = [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=arguments,
                ),
            ]
        events.append(self._event("response.output_item.done", output_index=index, item=done))
        self._output.append(done)
        return events

    def _open_item(self, kind: str, **extra: Any) -> list[bytes]:
        events = self._close()
        index = len(self._output)
        prefix = {"message": "msg_", "reasoning": "rs_", "function": "fc_"}[kind]
        item = {"kind": kind, "id": new_id(prefix), "text": [], **extra}
        self._open = item
        if kind == "message":
            added = {
                "id": item["id"],
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            events.append(self._event("response.output_item.added", output_index=index, item=added))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        elif kind == "reasoning":
            added = {"id": item["id"], "type": "reasoning", "summary": []}
            events.append(self._event("response.output_item.added", output_index=index, item=added))
            part = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=index,
                    summary_index=0,
                    part=part,
                )
            )
        else:
            added = _function_item(
                item["id"], extra["call_id"], extra["name"], "", status="in_progress"
            )
            events.append(self._event("response.output_item.added", output_index=index, item=added))
        return events

    # -- input -----------------------------------------------------------------------------------

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        if self.ended:
            return []
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            return self.fail(
                GatewayError(str(error.get("message") or "upstream error"), code=error.get("code"))
            )
        events = [] if self._started else self._start()
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            events += self._delta(delta)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                events += self._close()
        if self._usage is not None and not chunk.get("choices"):
            events += self._terminal()
        return events

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self._open is None or self._open["kind"] != "reasoning":
                events += self._open_item("reasoning")
            assert self._open is not None
            self._open["text"].append(reasoning)
            events.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    summary_index=0,
                    delta=reasoning,
                )
            )
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self._open is None or self._open["kind"] != "message":
                events += self._open_item("message")
            assert self._open is not None
            self._open["text"].append(content)
            events.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            )
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            index = call.get("index", 0)
            if (
                self._open is None
                or self._open["kind"] != "function"
                or self._open["index"] != index
            ):
                events += self._open_item(
                    "function",
                    index=index,
                    call_id=call.get("id") or "",
                    name=function.get("name") or "",
                )
            assert self._open is not None
            fragment = function.get("arguments")
            if isinstance(fragment, str) and fragment:
                self._open["text"].append(fragment)
                events.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=self._open["id"],
                        output_index=len(self._output),
                        delta=fragment,
                    )
                )
        return events

    def _terminal(self) -> list[bytes]:
        events = self._close()
        status, incomplete = status_for(self._finish)
        response = self._response(status)
        response["incomplete_details"] = incomplete
        response["usage"] = usage_from_chat(self._usage)
        self.ended = True
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self._event(kind, response=response)]

    def done(self) -> list[bytes]:
        """The chat stream's [DONE]: end with the terminal event if usage never came."""
        if self.ended:
            return []
        events = [] if self._started else self._start()
        return events + self._terminal()

    def fail(self, error: GatewayError) -> list[bytes]:
        """An upstream failure after events were sent: `error`, then `response.failed`."""
        if self.ended:
            return []
        events = [] if self._started else self._start()
        self.ended = True
        events.append(
            self._event("error", code=error.code, message=error.message, param=error.param)
        )
        response = self._response("failed")
        response["error"] = {"code": error.code or "server_error", "message": error.message}
        events.append(self._event("response.failed", response=response))
        return events
