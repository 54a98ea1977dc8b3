"""An OpenAI-style upstream that misbehaves on request, for the soak run (bench/soak.py).

    python bench/fault_upstream.py PORT

The request's `user` field picks the behaviour (the OpenAI pass-through forwards it as sent):
`ok` (a completion), `slow` (a completion after 50 ms), `stream` (five chunks, usage when asked,
[DONE]), `slowstream` (ten chunks 20 ms apart), `reset` (two chunks, then the connection is cut),
`429`, `500`, `html` (a 502 HTML page).
"""

import json
import sys

from twisted.internet import reactor
from twisted.web import resource, server

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def completion() -> bytes:
    return json.dumps({
        "id": "chatcmpl-soak", "object": "chat.completion", "created": 1, "model": "soak",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }).encode()


def chunk(content: str | None, usage: bool, finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "model": "soak",
        "choices": [{"index": 0, "delta": {} if content is None else {"content": content},
                     "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        obj["usage"] = None
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def error(status: int, message: str, type_: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": None}}).encode()


class Upstream(resource.Resource):
    isLeaf = True

    def render_POST(self, request):  # type: ignore[no-untyped-def]
        body = json.loads(request.content.read())
        kind = body.get("user", "ok")
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        if kind in ("ok", "slow"):
            request.setHeader(b"content-type", b"application/json")
            if kind == "ok":
                return completion()

            def answer() -> None:
                if not gone:
                    request.write(completion())
                    request.finish()

            reactor.callLater(0.05, answer)
            return server.NOT_DONE_YET
        if kind in ("429", "500", "html"):
            request.setResponseCode(int(kind) if kind != "html" else 502)
            if kind == "429":
                request.setHeader(b"retry-after", b"1")
            if kind == "html":
                request.setHeader(b"content-type", b"text/html")
                return b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            request.setHeader(b"content-type", b"application/json")
            return error(int(kind), "soak fault", "rate_limit_error" if kind == "429" else "server_error")
        request.setHeader(b"content-type", b"text/event-stream")
        count, gap = {"stream": (5, 0.0), "slowstream": (10, 0.02), "reset": (2, 0.005)}.get(kind, (5, 0.0))

        def send(i: int) -> None:
            if gone:
                return
            if i < count:
                request.write(chunk("tok", usage))
                reactor.callLater(gap, send, i + 1) if gap else send(i + 1)
                return
            if kind == "reset":  # after the chunks have left (abortConnection drops buffers)
                reactor.callLater(0.01, request.channel.transport.abortConnection)
                return
            tail = chunk(None, usage, "stop")
            if usage:
                tail += b"data: " + json.dumps({
                    "id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1,
                    "model": "soak", "choices": [], "usage": USAGE}).encode() + b"\n\n"
            request.write(tail + b"data: [DONE]\n\n")
            request.finish()

        send(0)
        return server.NOT_DONE_YET


if __name__ == "__main__":
    site = server.Site(Upstream())
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1", backlog=2048)
    reactor.run()
