"""The `echo` provider: answers with the last user message, without any network.

It exists so that a fresh install works with no keys (`make run` then the README's examples),
so users can test clients and load-test the gateway without spending tokens. It goes through
the same pipeline as every provider; tokens are whitespace-separated words, counted honestly.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, task

from gatewaylib import jsonutil
from gatewaylib.chatformat import ChunkWriter, Usage, completion, new_completion_id
from gatewaylib.config import ProviderConfig
from gatewaylib.providers.base import Call, StreamWriter
from gatewaylib.sse import DONE


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def echo_reply(messages: list[Any]) -> tuple[list[str], int]:
    """The reply's words and the prompt's token count (words across every message)."""
    prompt_tokens = 0
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = _text_of(message.get("content"))
        prompt_tokens += len(text.split())
        if message.get("role") == "user":
            last_user = text
    words = last_user.split()
    return words, prompt_tokens


def _max_words(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class EchoProvider:
    def __init__(self, config: ProviderConfig, reactor: Any) -> None:
        self.config = config
        self._clock = reactor

    def _reply(self, call: Call) -> tuple[list[str], str, Usage]:
        words, prompt_tokens = echo_reply(call.body.get("messages", []))
        finish = "stop"
        limit = _max_words(call.body)
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(words))
        call.usage = usage
        call.response_model = call.route.upstream_model
        return words, finish, usage

    async def complete(self, call: Call) -> bytes:
        words, finish, usage = self._reply(call)
        if self.config.token_delay and words:
            await self._wait(call, self.config.token_delay * len(words))
        return jsonutil.dumps(
            completion(
                completion_id=new_completion_id(),
                created=call.created,
                model=call.route.upstream_model,
                content=" ".join(words),
                tool_calls=None,
                finish_reason=finish,
                usage=usage,
            )
        )

    async def stream(self, call: Call, out: StreamWriter) -> None:
        words, finish, usage = self._reply(call)
        chunks = ChunkWriter(
            new_completion_id(), call.created, call.route.upstream_model, call.include_usage
        )
        out.write(chunks.chunk({"role": "assistant", "content": ""}))
        for i, word in enumerate(words):
            if self.config.token_delay:
                await self._wait(call, self.config.token_delay)
            out.write(chunks.chunk({"content": word if i == 0 else " " + word}))
        out.write(chunks.chunk({}, finish))
        if call.include_usage:
            out.write(chunks.usage_chunk(usage))
        out.write(DONE)

    async def _wait(self, call: Call, seconds: float) -> None:
        """The simulated generation time: counted as upstream time, like a real provider's."""
        started = time.perf_counter()
        try:
            await task.deferLater(self._clock, seconds)
        finally:
            call.upstream_seconds += time.perf_counter() - started

    def close(self) -> defer.Deferred[Any]:
        return defer.succeed(None)
