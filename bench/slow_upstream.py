"""A streaming OpenAI-style upstream with a fixed gap between events, for stream benchmarks.

python bench/slow_upstream.py PORT EVENTS INTERVAL_SECONDS
"""

import json
import sys
import time

from twisted.internet import reactor
from twisted.web import resource, server


def chunk(i: int) -> bytes:
    # The content is the send time (CLOCK_MONOTONIC, shared by all processes): the client
    # measures each event's delivery delay from it.
    obj = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "delta": {"content": f"@{time.monotonic():.6f}@"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


USAGE = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\n'


class Streamer(resource.Resource):
    isLeaf = True

    def __init__(self, events: int, interval: float) -> None:
        super().__init__()
        self.events, self.interval = events, interval

    def render_POST(self, request):
        request.setHeader(b"content-type", b"text/event-stream")
        request.notifyFinish().addErrback(lambda _: None)

        def send(i: int) -> None:
            if request._disconnected:
                return
            if i == self.events:
                request.write(USAGE + b"data: [DONE]\n\n")
                request.finish()
                return
            request.write(chunk(i))
            reactor.callLater(self.interval, send, i + 1)

        send(0)
        return server.NOT_DONE_YET


if __name__ == "__main__":
    site = server.Site(Streamer(int(sys.argv[2]), float(sys.argv[3])))
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1", backlog=2048)
    reactor.run()
