"""Soak: many mixed requests through a real twistd gateway; does anything leak or go uncounted?

    python bench/soak.py [--requests N] [--concurrency C] [--smoke]

The mix (in a fixed cycle): completions, streams, clients that vanish mid-stream and mid-request,
upstream 429, 500, HTML error pages and connections cut mid-stream, unknown keys and malformed
bodies. Every reply is checked against what it must be. Figures: RSS after warm-up and at the end,
the gateway's file descriptors (the upstream pool's sockets apart) after warm-up and at the end,
client connections still open, requests in flight, and the accounting identity
(requests sent = sum of llm_requests_total = access-log lines). Exits 1 if an exact check fails.
Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: process handling and helpers

KEY = run.KEY
#: (name, user field sent upstream, stream, how the client behaves, expected status)
KINDS = [
    *[("ok", "ok", False, "read", 200)] * 6,
    *[("stream", "stream", True, "read", 200)] * 5,
    *[("stream abort", "slowstream", True, "abort-after-first-event", None)] * 2,
    ("request abort", "slow", False, "abort-after-10ms", None),
    ("upstream 429", "429", False, "read", 429),
    ("upstream 500", "500", False, "read", 502),
    ("upstream cut mid-stream", "reset", True, "read", 200),
    ("upstream HTML page", "html", False, "read", 502),
    ("unknown key", "ok", False, "bad-key", 401),
    ("malformed body", "ok", False, "bad-json", 400),
]


def request_bytes(port: int, user: str, stream: bool, behaviour: str) -> bytes:
    body = json.dumps({"model": "soak", "user": user, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    if behaviour == "bad-json":
        body = body[:-1]
    key = "sk-not-a-key-of-this-gateway" if behaviour == "bad-key" else KEY
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def one(port: int, kind: tuple[str, str, bool, str, int | None], problems: list[str]) -> None:
    name, user, stream, behaviour, expected = kind
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(port, user, stream, behaviour))
        await writer.drain()
        if behaviour == "abort-after-10ms":
            await asyncio.sleep(0.01)
            return
        data = b""
        while True:
            part = await reader.read(65536)
            if not part:
                break
            data += part
            if behaviour == "abort-after-first-event" and b"data:" in data:
                return
        status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
        if status != expected:
            reply = data.partition(b"\r\n\r\n")[2][:300].decode(errors="replace")
            problems.append(f"{name}: status {status}, expected {expected}: {reply}")
        elif name == "stream" and b"data: [DONE]" not in data:
            problems.append(f"{name}: no [DONE]")
        elif name == "upstream cut mid-stream" and (b"data: [DONE]" in data or b'"error"' not in data):
            problems.append(f"{name}: not ended by an error event")
    finally:
        writer.close()


async def load(port: int, kinds: list[tuple[str, str, bool, str, int | None]], concurrency: int,
               problems: list[str]) -> None:
    queue = iter(kinds)

    async def worker() -> None:
        for kind in queue:
            try:
                await one(port, kind, problems)
            except OSError as e:
                problems.append(f"{kind[0]}: {e!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def sockets(port: int, *, remote: bool) -> int:
    """Sockets owned by a process (inode != 0) whose local (or remote) port is `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, rem, inode = fields[1], fields[2], fields[9]
            address = rem if remote else local
            if int(address.rsplit(":", 1)[1], 16) == port and inode != "0":
                count += 1
    return count


def own_fds(pid: int, upstream: int) -> int:
    """The gateway's open descriptors, less its pooled upstream connections (which the pool
    keeps open by design, more or fewer as faults cut them)."""
    return len(os.listdir(f"/proc/{pid}/fd")) - sockets(upstream, remote=True)


def scrape(port: int) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("llm_requests_total{"))
    in_flight = float(re.search(r"^llm_requests_in_flight (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return total, in_flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="2,000 requests (CI keeps it working)")
    args = parser.parse_args()
    total = 2_000 if args.smoke else args.requests
    warmup = total // 10
    kinds = [KINDS[i % len(KINDS)] for i in range(total)]
    procs = run.Procs()
    problems: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="litegate-soak-") as tmpname:
            tmp = Path(tmpname)
            upstream = run.free_port()
            procs.start([run.PY, str(run.ROOT / "bench" / "fault_upstream.py"), str(upstream)])
            run.wait_http(f"http://127.0.0.1:{upstream}/")
            config = tmp / "soak.yaml"
            config.write_text(
                f'listen: "127.0.0.1:0"\n'
                f'providers:\n  openai: {{ base_url: "http://127.0.0.1:{upstream}/v1", api_key: "sk-upstream" }}\n'
                f'models:\n  "soak": {{ provider: openai, model: gpt-4o }}\n'
                f'api_keys:\n  - {{ key: "{KEY}", app: "soak", allowed_models: ["*"] }}\n'
            )
            port = run.free_port()
            log_path = tmp / "access.log"
            with log_path.open("wb") as log_file:
                gw = subprocess_start(procs, config, port, log_file)
                run.wait_http(f"http://127.0.0.1:{port}/health")
                started = time.monotonic()
                asyncio.run(load(port, kinds[:warmup], args.concurrency, problems))
                time.sleep(1)
                rss_warm, fds_warm = run.rss_kb(gw.pid) / 1024, own_fds(gw.pid, upstream)
                asyncio.run(load(port, kinds[warmup:], args.concurrency, problems))
                took = time.monotonic() - started
                time.sleep(1.5)  # aborted requests finish, the access log flushes
                rss_end, fds_end = run.rss_kb(gw.pid) / 1024, own_fds(gw.pid, upstream)
                counted, in_flight = scrape(port)
                open_clients = sockets(port, remote=False) - 1  # less the listening socket
                procs.stop(gw)
            log_lines = sum(1 for line in log_path.read_text().splitlines() if line.startswith("time="))
    finally:
        procs.stop_all()
    checks = [
        ("requests sent", f"{total} in {took:.1f} s ({total / took:.0f}/s), concurrency {args.concurrency}", "", None),
        ("replies not as expected", str(len(problems)), "0", not problems),
        ("sum of llm_requests_total", f"{counted:.0f}", f"= {total}", counted == total),
        ("access-log lines", str(log_lines), f"= {total}", log_lines == total),
        ("requests in flight at the end", f"{in_flight:.0f}", "0", in_flight == 0),
        ("client connections still open at the end", str(open_clients), "0", open_clients == 0),
        ("file descriptors (pool apart), after warm-up → end", f"{fds_warm} → {fds_end}", "back to baseline", fds_end <= fds_warm),
        ("RSS after warm-up → end", f"{rss_warm:.1f} → {rss_end:.1f} MB", "", None),
        ("RSS growth after warm-up", f"{rss_end - rss_warm:.1f} MB", "< 10 MB", None if args.smoke else rss_end - rss_warm < 10),
    ]
    print(f"# litegate soak{' (smoke)' if args.smoke else ''}: {len(KINDS)}-request cycle of "
          + ", ".join(sorted({k[0] for k in KINDS})))
    print("\n| figure | measured | target | met |\n|---|---|---|---|")
    for name, value, target, met in checks:
        print(f"| {name} | {value} | {target} | {'' if met is None else ('yes' if met else '**no**')} |")
    for problem in problems[:10]:
        print(f"problem: {problem}")
    exact = [met for _, _, _, met in checks[:7] if met is not None]
    sys.exit(0 if all(exact) else 1)


def subprocess_start(procs: run.Procs, config: Path, port: int, log_file: Any) -> subprocess.Popen[bytes]:
    """twistd with the access log (its stdout) kept in a file."""
    proc = subprocess.Popen(
        [run.TWISTD, "-n", "--pidfile=", "litegate", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=log_file, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(run.ROOT)},
    )
    procs.procs.append(proc)
    return proc


if __name__ == "__main__":
    main()
