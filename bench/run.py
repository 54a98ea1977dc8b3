"""litegate benchmarks, side by side in one run on this machine. Prints a table of figures.

    python bench/run.py            # full run (a few minutes), writes bench/results/<date>.md
    python bench/run.py --smoke    # seconds: every phase once, tiny loads (CI keeps it working)

Upstream: nginx serving canned OpenAI/Anthropic JSON and SSE (it cannot be the bottleneck), and a
Python streamer with a fixed gap between events. Load: wrk with a Lua body. Systems: the upstream
directly, a ~40-line treq proxy (the ceiling of this stack), litegate (pass-through and
Anthropic-translated), and LiteLLM's proxy when `bench/requirements-peers.txt` is installed in
`bench/.venv-peers`. Loopback only; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TWISTD = str(Path(PY).parent / "twistd")
KEY = "sk-bench-virtual-key-000001"

OPENAI_JSON = {
    "id": "chatcmpl-b",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from the bench upstream!",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}
ANTHROPIC_JSON = {
    "id": "msg_b",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "content": [{"type": "text", "text": "Hello from the bench upstream!"}],
    "usage": {"input_tokens": 11, "output_tokens": 7},
}


def openai_sse() -> str:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
        }
        for w in ["Hello", " from", " the", " bench"]
    ]
    chunks.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
        }
    )
    return (
        "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks)
        + "data: [DONE]\n\n"
    )


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return time.monotonic() - started
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.005)


def ensure_tools() -> None:
    missing = [
        t
        for t in ("nginx", "wrk")
        if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
    ]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {', '.join(missing)} from Debian's packages", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        pkgs = ["nginx-light" if t == "nginx" else t for t in missing]
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"bench: {tool} is required (apt-get install {tool})")


class Procs:
    """Every process the bench starts, stopped at exit whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=kw.pop("stderr", subprocess.DEVNULL), **kw
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


def start_nginx(procs: Procs, tmp: Path) -> int:
    port = free_port()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    sse = openai_sse()
    anth_events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **ANTHROPIC_JSON,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        *[
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": w},
                },
            )
            for w in ["Hello", " from", " the", " bench"]
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    anth_sse = "".join(
        f"event: {n}\ndata: {json.dumps(d, separators=(',', ':'))}\n\n" for n, d in anth_events
    )
    temp = "".join(
        f"{k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  {temp}
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{ default_type application/json; return 200 '{json.dumps(OPENAI_JSON)}'; }}
    location = /stream/v1/chat/completions {{ default_type text/event-stream; return 200 '{sse}'; }}
    location = /v1/messages {{ default_type application/json; return 200 '{json.dumps(ANTHROPIC_JSON)}'; }}
    location = /stream/v1/messages {{ default_type text/event-stream; return 200 '{anth_sse}'; }}
  }}
}}
"""
    (tmp / "nginx.conf").write_text(conf)
    procs.start([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    wait_http(f"http://127.0.0.1:{port}/nope")
    return port


def gateway_config(tmp: Path, nginx: int, slow: int) -> Path:
    path = tmp / "litegate.yaml"
    path.write_text(f"""
listen: "127.0.0.1:0"
providers:
  openai:      {{ type: openai, base_url: "http://127.0.0.1:{nginx}/v1", api_key: "sk-upstream" }}
  openai-sse:  {{ type: openai, base_url: "http://127.0.0.1:{nginx}/stream/v1", api_key: "sk-upstream" }}
  anthropic:   {{ type: anthropic, base_url: "http://127.0.0.1:{nginx}/v1", api_key: "sk-ant-upstream" }}
  anthropic-sse: {{ type: anthropic, base_url: "http://127.0.0.1:{nginx}/stream/v1", api_key: "sk-ant-upstream" }}
  slow:        {{ type: openai, base_url: "http://127.0.0.1:{slow}/v1", api_key: "sk-upstream", max_connections: 2048 }}
models:
  "gpt-4o":     {{ provider: openai, model: gpt-4o }}
  "gpt-4o-sse": {{ provider: openai-sse, model: gpt-4o }}
  "claude":     {{ provider: anthropic, model: claude-sonnet-4-5 }}
  "claude-sse": {{ provider: anthropic-sse, model: claude-sonnet-4-5 }}
  "slow":       {{ provider: slow, model: gpt-4o }}
api_keys:
  - {{ key: "{KEY}", app: "bench", allowed_models: ["*"] }}
limits: {{ max_concurrent_requests: 4096 }}
""")
    return path


def start_gateway(
    procs: Procs, config: Path, workers: int = 1
) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        TWISTD,
        "-n",
        "--pidfile=",
        "litegate",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    if workers > 1:
        args += ["--workers", str(workers)]
    started = time.monotonic()
    proc = procs.start(args, env=env)
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc, port, time.monotonic() - started


def wrk(url: str, body: dict[str, Any], conns: int, seconds: float, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        result[f"p{pct}"] = ms(re.search(rf"\s{pct}%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        result["errors"] += sum(int(x) for x in socket_errors.groups())
    return result


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over rounds (errors are summed)."""
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def request_bytes(port: int, model: str, stream: bool, path: str = "/v1/chat/completions") -> bytes:
    body = json.dumps(
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]}
    ).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def ttfb(port: int, model: str, runs: int, path: str = "/v1/chat/completions") -> float:
    """Median time to the first event of a stream (ms)."""
    samples = []
    for _ in range(runs):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            started = time.perf_counter()
            sock.sendall(request_bytes(port, model, True, path))
            data = b""
            while b"data:" not in data:
                data += sock.recv(65536)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


_SENT_AT = re.compile(rb"@([0-9.]+)@")


async def one_stream(
    port: int, delays: list[tuple[float, float]], firsts: list[float], errors: list[str],
    start: float = 0.0,
) -> None:
    """Read one stream; each event carries its send time, so its delivery delay is known.

    `delays` gets (send time, delay) per event, `firsts` the send time of the first event.
    """
    try:
        await asyncio.sleep(start)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes(port, "slow", True))
        await writer.drain()
        buffer, scanned, first = b"", 0, True
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = time.monotonic()
            buffer += data
            # Stamps that became complete with this read, each counted once.
            for match in _SENT_AT.finditer(buffer, max(scanned - 32, 0)):
                if match.end() > scanned:
                    sent = float(match.group(1))
                    if first:
                        firsts.append(sent)
                        first = False
                    delays.append((sent, now - sent))
            scanned = len(buffer)
        writer.close()
        if not buffer.startswith(b"HTTP/1.1 200") or b"data: [DONE]" not in buffer:
            errors.append(buffer[:80].decode(errors="replace"))
    except OSError as e:
        errors.append(repr(e))


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[max(int(len(values) * 0.99) - 1, 0)] if values else float("nan")


def concurrent_streams(
    port: int, pid: int | None, n: int, interval: float, lockstep: bool = False
) -> dict[str, float]:
    """n streams at once; p99 of the per-event delivery delay (upstream send -> client read).

    The streams open spread over one interval, so their events are spread over it as the
    tokens of independent requests are. `lockstep` opens them all at once instead: every
    stream's event is then due at the same instant, bursts of n events every interval (the
    worst case, which no real traffic keeps up). Two p99s: over all events, and over the events
    sent once every stream was open (relaying alone, without the storm of n requests arriving
    within one interval, which is many times the request rate a gateway process can take).
    """
    delays: list[tuple[float, float]] = []
    firsts: list[float] = []
    errors: list[str] = []
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set() and pid is not None:
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()

    async def main() -> None:
        starts = [0.0 if lockstep else i * interval / n for i in range(n)]
        await asyncio.gather(*(one_stream(port, delays, firsts, errors, t) for t in starts))

    began = time.monotonic()
    asyncio.run(main())
    stop.set()
    sampler.join()
    all_open = max(firsts) if firsts else float("inf")
    steady = [d for sent, d in delays if sent > all_open]
    return {
        "errors": len(errors),
        "rss_mb": peak[0] / 1024,
        "gap_p99_ms": p99([d for _, d in delays]) * 1000,
        "steady_p99_ms": p99(steady) * 1000,
        "open_s": all_open - began,
        "events": len(delays),
        "steady_events": len(steady),
    }


def start_litellm(
    procs: Procs, tmp: Path, nginx: int
) -> tuple[subprocess.Popen[bytes], int] | None:
    litellm = ROOT / "bench" / ".venv-peers" / "bin" / "litellm"
    if not litellm.exists():
        return None
    port = free_port()
    (tmp / "litellm.yaml").write_text(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n"
        f"      model: openai/gpt-4o\n      api_base: http://127.0.0.1:{nginx}/v1\n      api_key: sk-upstream\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    env = {**os.environ, "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
    proc = procs.start(
        [
            str(litellm),
            "--config",
            str(tmp / "litellm.yaml"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--num_workers",
            "1",
        ],
        env=env,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: tiny loads, no result file"
    )
    args = parser.parse_args()
    smoke = args.smoke
    seconds, rounds = (1, 1) if smoke else (4, 3)
    streams, interval, events = (50, 0.05, 10) if smoke else (1000, 0.1, 50)
    ensure_tools()
    procs = Procs()
    figures: dict[str, Any] = {}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}
    try:
        with tempfile.TemporaryDirectory(prefix="litegate-bench-") as tmpname:
            tmp = Path(tmpname)
            nginx = start_nginx(procs, tmp)
            slow = free_port()
            procs.start(
                [
                    PY,
                    str(ROOT / "bench" / "slow_upstream.py"),
                    str(slow),
                    str(events),
                    str(interval),
                ]
            )
            wait_http(f"http://127.0.0.1:{slow}/")
            config = gateway_config(tmp, nginx, slow)

            starts = []
            for _ in range(1 if smoke else 3):
                proc, port, took = start_gateway(procs, config)
                starts.append(took)
                procs.stop(proc)
            figures["cold_start_s"] = statistics.median(starts)
            gw, port, _ = start_gateway(procs, config)
            time.sleep(0.5)
            figures["idle_rss_mb"] = rss_kb(gw.pid) / 1024

            treq_port = free_port()
            procs.start(
                [
                    PY,
                    str(ROOT / "bench" / "treq_proxy.py"),
                    str(treq_port),
                    f"http://127.0.0.1:{nginx}",
                ]
            )
            wait_http(f"http://127.0.0.1:{treq_port}/")
            systems: dict[str, tuple[str, dict[str, Any]]] = {
                "upstream direct (nginx)": (f"http://127.0.0.1:{nginx}/v1/chat/completions", body),
                "treq proxy (~40 lines)": (
                    f"http://127.0.0.1:{treq_port}/v1/chat/completions",
                    body,
                ),
                "litegate pass-through": (f"http://127.0.0.1:{port}/v1/chat/completions", body),
                "litegate Anthropic-translated": (
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    {**body, "model": "claude"},
                ),
            }
            litellm = None if smoke else start_litellm(procs, tmp, nginx)
            if litellm is not None:
                figures["litellm_idle_rss_mb"] = rss_kb(litellm[0].pid) / 1024
                systems["LiteLLM proxy 1.80.0"] = (
                    f"http://127.0.0.1:{litellm[1]}/v1/chat/completions",
                    body,
                )
            else:
                print(
                    "LiteLLM: skipped (install bench/requirements-peers.txt into bench/.venv-peers: make bench-peers)",
                    flush=True,
                )
            for url, payload in systems.values():
                wrk(url, payload, 10, 1, tmp)  # warm-up: pools, caches
            # Rounds in which every system takes its turn, medians over the rounds: this
            # machine's speed drifts by tens of percent within minutes, and interleaving puts
            # every system under the same drift.
            runs: dict[str, dict[str, list[dict[str, float]]]] = {
                name: {f"c{c}": [] for c in (1, 10, 50)} for name in systems
            }
            for _ in range(rounds):
                for c in (1, 10, 50):
                    for name, (url, payload) in systems.items():
                        runs[name][f"c{c}"].append(wrk(url, payload, c, seconds, tmp))
            load = {name: {level: median_run(r) for level, r in levels.items()} for name, levels in runs.items()}
            for name, levels in load.items():
                print(f"{name}: {json.dumps(levels)}", flush=True)
            figures["load"] = load
            figures["rounds"], figures["seconds"] = rounds, seconds
            figures["rss_after_load_mb"] = rss_kb(gw.pid) / 1024

            figures["ttfb_direct_ms"] = ttfb(
                nginx, "gpt-4o", 20 if smoke else 200, "/stream/v1/chat/completions"
            )
            figures["ttfb_gateway_ms"] = ttfb(port, "gpt-4o-sse", 20 if smoke else 200)
            # The same load straight to the streaming upstream first: the baseline that the
            # machine itself (client, upstream, 2 cores) imposes on inter-event gaps.
            stream_runs: dict[str, list[dict[str, float]]] = {
                "streams_direct": [], "streams": [], "lockstep_direct": [], "lockstep": []
            }
            for _ in range(rounds):
                for lockstep in (False, True):
                    prefix = "lockstep" if lockstep else "streams"
                    stream_runs[f"{prefix}_direct"].append(
                        concurrent_streams(slow, None, streams, interval, lockstep)
                    )
                    stream_runs[prefix].append(
                        concurrent_streams(port, gw.pid, streams, interval, lockstep)
                    )
            for key, results in stream_runs.items():
                figures[key] = {
                    **median_run(results),
                    "rss_mb": max(r["rss_mb"] for r in results),
                    "events": sum(r["events"] for r in results),
                    "steady_events": sum(r["steady_events"] for r in results),
                }
            figures["streams_n"] = streams
            figures["interval_ms"] = interval * 1000
            if not smoke:
                procs.stop(gw)
                two, port2, _ = start_gateway(procs, config, workers=2)
                wrk(f"http://127.0.0.1:{port2}/v1/chat/completions", body, 10, 1, tmp)
                figures["workers2"] = wrk(
                    f"http://127.0.0.1:{port2}/v1/chat/completions", body, 50, seconds, tmp
                )
                procs.stop(two)
    finally:
        procs.stop_all()
    report = render(figures, smoke)
    print(report)
    if not smoke:
        out = ROOT / "bench" / "results" / f"{datetime.date.today().isoformat()}.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(report + "\n")
        print(f"written to {out.relative_to(ROOT)}")


def render(f: dict[str, Any], smoke: bool) -> str:
    load = f["load"]
    gw = load["litegate pass-through"]
    direct = load["upstream direct (nginx)"]
    treq = load["treq proxy (~40 lines)"]
    anth = load["litegate Anthropic-translated"]
    lines = [
        f"# litegate benchmark {datetime.date.today().isoformat()}{' (smoke)' if smoke else ''}",
        "",
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform_line()}. "
        f"All processes on this machine over loopback; one gateway process; wrk -t1; load figures are medians of {f['rounds']} interleaved rounds of {f.get('seconds', 4)} s.",
        "",
        "| system | req/s c=50 | p50 c=1 (ms) | p99 c=1 (ms) | p50 c=10 (ms) | p99 c=10 (ms) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in load.items():
        errors = sum(int(r["errors"]) for r in runs.values())
        lines.append(
            f"| {name} | {runs['c50']['rps']:.0f} | {runs['c1']['p50']:.3f} | {runs['c1']['p99']:.3f} | "
            f"{runs['c10']['p50']:.3f} | {runs['c10']['p99']:.3f} | {errors} |"
        )
    s, d = f["streams"], f["streams_direct"]
    ls, ld = f["lockstep"], f["lockstep_direct"]
    targets = [
        (
            "idle RSS after start-up",
            f"{f['idle_rss_mb']:.1f} MB",
            "≤ 50 MB",
            f["idle_rss_mb"] <= 50,
        ),
        ("RSS after the load runs", f"{f['rss_after_load_mb']:.1f} MB", "", None),
        (
            "cold start (process start → first 200 on /health)",
            f"{f['cold_start_s'] * 1000:.0f} ms",
            "< 1 s",
            f["cold_start_s"] < 1,
        ),
        (
            "added latency p50 at c=1 (gateway − direct)",
            f"{gw['c1']['p50'] - direct['c1']['p50']:.3f} ms",
            "≤ 1.0 ms",
            gw["c1"]["p50"] - direct["c1"]["p50"] <= 1.0,
        ),
        (
            "throughput vs treq proxy (c=50)",
            f"{gw['c50']['rps'] / treq['c50']['rps']:.2f}×",
            "≥ 0.9×",
            gw["c50"]["rps"] / treq["c50"]["rps"] >= 0.9,
        ),
        (
            "Anthropic-translated vs pass-through (c=50)",
            f"{anth['c50']['rps'] / gw['c50']['rps']:.2f}×",
            "≥ 0.8×",
            anth["c50"]["rps"] / gw["c50"]["rps"] >= 0.8,
        ),
        (
            "stream TTFB overhead (median, gateway − direct)",
            f"{f['ttfb_gateway_ms'] - f['ttfb_direct_ms']:.3f} ms",
            "",
            None,
        ),
        (f"{f['streams_n']} concurrent streams: errors", str(s["errors"]), "0", s["errors"] == 0),
        (
            f"{f['streams_n']} concurrent streams: peak RSS",
            f"{s['rss_mb']:.1f} MB",
            "≤ 150 MB",
            s["rss_mb"] <= 150,
        ),
        (
            f"{f['streams_n']} concurrent streams: event delivery delay p99 once all are open, direct / through litegate",
            f"{d['steady_p99_ms']:.1f} / {s['steady_p99_ms']:.1f} ms (medians of {f['rounds']} runs; one event per stream every {f['interval_ms']:.0f} ms, streams opened over one interval; {s['steady_events']} of {s['events']} events sent once all were open)",
            "",
            None,
        ),
        (
            f"{f['streams_n']} concurrent streams: added inter-event delay p99 (litegate − direct)",
            f"{s['steady_p99_ms'] - d['steady_p99_ms']:.1f} ms",
            "< 50 ms",
            s["steady_p99_ms"] - d["steady_p99_ms"] < 50,
        ),
        (
            f"{f['streams_n']} concurrent streams: delay p99 over all events, their opening included, direct / through litegate",
            f"{d['gap_p99_ms']:.1f} / {s['gap_p99_ms']:.1f} ms (all {f['streams_n']} open after {s['open_s'] * 1000:.0f} ms through litegate, {d['open_s'] * 1000:.0f} ms direct)",
            "",
            None,
        ),
        (
            f"{f['streams_n']} lock-step streams (opened at once, bursts of {f['streams_n']} events): added delay p99 once all are open; over all events",
            f"{ls['steady_p99_ms'] - ld['steady_p99_ms']:.1f} ms; {ls['gap_p99_ms'] - ld['gap_p99_ms']:.1f} ms (errors {ls['errors']})",
            "",
            None,
        ),
    ]
    if "LiteLLM proxy 1.80.0" in load:
        ratio = gw["c50"]["rps"] / load["LiteLLM proxy 1.80.0"]["c50"]["rps"]
        targets.insert(3, ("throughput vs LiteLLM (c=50)", f"{ratio:.1f}×", "≥ 15×", ratio >= 15))
        targets.insert(1, ("LiteLLM idle RSS", f"{f['litellm_idle_rss_mb']:.1f} MB", "", None))
    if "workers2" in f:
        targets.append(
            (
                "2 workers vs 1, throughput c=50",
                f"{f['workers2']['rps'] / gw['c50']['rps']:.2f}× ({f['workers2']['rps']:.0f} req/s)",
                "",
                None,
            )
        )
    lines += ["", "| figure | measured | target | met |", "|---|---|---|---|"]
    for name, value, target, met in targets:
        lines.append(
            f"| {name} | {value} | {target} | {'' if met is None else ('yes' if met else '**no**')} |"
        )
    lines += ["", "Reproduce: `make bench` (installs nginx and wrk from Debian when missing)."]
    return "\n".join(lines)


def platform_line() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = "unknown CPU"
    return model


if __name__ == "__main__":
    main()
