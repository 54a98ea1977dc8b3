"""The ceiling of this stack: a minimal treq pass-through proxy (no auth, routing, metrics).

python bench/treq_proxy.py LISTEN_PORT UPSTREAM_ORIGIN
"""

import sys

import treq
from twisted.internet import defer, reactor
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool


class Proxy(resource.Resource):
    isLeaf = True

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        pool = HTTPConnectionPool(reactor)
        pool.maxPersistentPerHost = 256
        self.http = treq.client.HTTPClient(Agent(reactor, pool=pool))

    def render_POST(self, request):
        body = request.content.read()
        d = self.http.post(
            self.upstream + request.uri.decode(),
            data=body,
            headers={"Content-Type": "application/json"},
            unbuffered=True,
        )

        def relay(response):
            request.setResponseCode(response.code)
            request.setHeader(
                b"content-type",
                response.headers.getRawHeaders(b"content-type", [b"application/json"])[0],
            )
            return treq.collect(response, request.write)

        d.addCallback(relay)
        d.addBoth(lambda _: request.finish() if not request.finished else None)
        return server.NOT_DONE_YET


if __name__ == "__main__":
    site = server.Site(Proxy(sys.argv[2]))
    site.log = lambda request: None  # type: ignore[method-assign]
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    defer.setDebugging(False)
    reactor.run()
