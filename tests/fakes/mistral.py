"""A fake Mistral chat API: OpenAI-compatible, with Mistral's quirks on the wire.

What it rejects, as Mistral does: any request field outside its schema (422, FastAPI
`{"detail":[...]}`, e.g. `stream_options`, `seed`, `user`, `logprobs`), extra message fields,
and tool-call ids that are not exactly 9 characters of [a-zA-Z0-9] (400 in Mistral's
`{"object":"error",...}` shape). What it sends: its own 9-character tool-call ids, usage on the
finish chunk of a stream (there is no separate usage chunk), `model_length` when `max_tokens`
is 1.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply, sse_data

API_KEY = "mistral-fake-provider-key-3c9d1e7f"
MODEL_REPORTED = "mistral-small-2506"
TEXT_PARTS = ["Hello", " from", " fake", " Mistral!"]
ANSWER = "It is sunny in Paris."
TOOL_ID = "D681PevKs"
CREATED = 1767225600
_ID = re.compile(r"[a-zA-Z0-9]{9}")
_FIELDS = {
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
    "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt",
}
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}


def extra_forbidden(loc: list[Any], value: Any) -> Reply:
    detail = [{"type": "extra_forbidden", "loc": ["body", *loc], "msg": "Extra inputs are not permitted", "input": value}]
    return Reply(422, {"content-type": "application/json"}, json.dumps({"detail": detail}).encode())


def mistral_error(status: int, message: str, type_: str, code: str | None = None) -> Reply:
    body = {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    return Reply(status, {"content-type": "application/json"}, json.dumps(body).encode())


def prompt_tokens(messages: list[Any]) -> int:
    return sum(4 + len(str(m.get("content") or "").split()) for m in messages)


class FakeMistral(FakeServer):
    api_key = API_KEY

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def default_reply(self, recorded: Recorded) -> Reply:
        if recorded.method != "POST" or recorded.path != "/v1/chat/completions":
            return mistral_error(404, "Not Found", "not_found")
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"content-type": "application/json"}, b'{"message":"Unauthorized","request_id":"fake"}')
        body = json.loads(recorded.body)
        for key, value in body.items():
            if key not in _FIELDS:
                return extra_forbidden([key], value)
        for i, message in enumerate(body["messages"]):
            allowed = _MESSAGE_FIELDS.get(message.get("role"))
            if allowed is None:
                return Reply(422, {"content-type": "application/json"}, json.dumps({"detail": [{"type": "literal_error", "loc": ["body", "messages", i, "role"], "msg": "Input should be 'system', 'user', 'assistant' or 'tool'"}]}).encode())
            for key in message:
                if key not in allowed:
                    return extra_forbidden(["messages", i, message["role"], key], message[key])
            ids = [c.get("id") for c in message.get("tool_calls") or []]
            if "tool_call_id" in message:
                ids.append(message["tool_call_id"])
            for tool_id in ids:
                if not isinstance(tool_id, str) or not _ID.fullmatch(tool_id):
                    return mistral_error(
                        400,
                        f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9.",
                        "invalid_request_message_order",
                        "3280",
                    )
        last = body["messages"][-1]
        offered = bool(body.get("tools")) and body.get("tool_choice") != "none"
        usage = {"prompt_tokens": prompt_tokens(body["messages"]), "total_tokens": 0, "completion_tokens": 6}
        usage["total_tokens"] = usage["prompt_tokens"] + 6
        finish = "model_length" if body.get("max_tokens") == 1 else "stop"
        tool_calls = None
        text = "".join(TEXT_PARTS)
        if last["role"] == "tool":
            text = ANSWER
        elif offered and last["role"] == "user":
            text, finish = "", "tool_calls"
            tool_calls = [{"id": TOOL_ID, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}, "index": 0}]
        if body.get("stream"):
            return self._stream(text, tool_calls, finish, usage)
        message: dict[str, Any] = {"role": "assistant", "content": text, "tool_calls": tool_calls, "prefix": False}
        payload = {
            "id": "cmpl-fakemistral01",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL_REPORTED,
            "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        return Reply(200, {"content-type": "application/json"}, json.dumps(payload).encode())

    def _stream(self, text: str, tool_calls: Any, finish: str, usage: dict[str, Any]) -> Reply:
        def chunk(delta: dict[str, Any], reason: str | None = None, with_usage: bool = False) -> bytes:
            obj: dict[str, Any] = {
                "id": "cmpl-fakemistral01",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL_REPORTED,
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
            if with_usage:
                obj["usage"] = usage
            return sse_data(obj)

        events = [chunk({"role": "assistant", "content": ""})]
        if tool_calls:
            events.append(chunk({"tool_calls": tool_calls}))
        else:
            parts = [ANSWER] if text == ANSWER else TEXT_PARTS
            events += [chunk({"content": p}) for p in parts]
        events.append(chunk({"content": ""}, finish, with_usage=True))
        events.append(b"data: [DONE]\n\n")
        return Reply(200, {"content-type": "text/event-stream; charset=utf-8"}, events=events)
