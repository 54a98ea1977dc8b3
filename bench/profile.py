"""Profile the gateway under one benchmark load and print where its CPU goes.

    python bench/profile.py passthrough|anthropic|streams [--seconds S] [--top N] [--cprofile]

The load is the one bench/run.py uses (wrk at c=50 against nginx's canned bodies, or concurrent
streams from the slow upstream). By default py-spy samples the running gateway (low overhead,
so small functions are not inflated; `pip install py-spy`) and the table gives each function's
share of the samples, by itself and with what it calls. `--cprofile` runs the gateway under
twistd's cProfile instead and prints pstats sorted by own time. Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: the same upstreams, config and load generators


def summarize(collapsed: Path, top: int) -> None:
    """py-spy's collapsed stacks -> the functions with the most samples (self and inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")").split(":")[0]
                  for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} samples")
    print(f"{'own %':>6} {'incl %':>6}  function")
    for frame, n in own.most_common(top):
        print(f"{100 * n / total:6.1f} {100 * inclusive[frame] / total:6.1f}  {frame}")
    print("\nmost inclusive:")
    for frame, n in inclusive.most_common(top):
        print(f"{100 * own[frame] / total:6.1f} {100 * n / total:6.1f}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("load", choices=["passthrough", "anthropic", "streams"])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30, help="events per stream")
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead of py-spy")
    parser.add_argument("--keep", help="also save the raw profile here")
    args = parser.parse_args()
    run.ensure_tools()
    spy = shutil.which("py-spy") or str(Path(run.PY).parent / "py-spy")
    if not args.cprofile and not Path(spy).exists():
        sys.exit("py-spy is not installed (pip install py-spy), or use --cprofile")
    procs = run.Procs()
    try:
        with tempfile.TemporaryDirectory(prefix="litegate-profile-") as tmpname:
            tmp = Path(tmpname)
            nginx = run.start_nginx(procs, tmp)
            slow = run.free_port()
            procs.start([run.PY, str(run.ROOT / "bench" / "slow_upstream.py"), str(slow), str(args.events), "0.1"])
            run.wait_http(f"http://127.0.0.1:{slow}/")
            config = run.gateway_config(tmp, nginx, slow)
            port = run.free_port()
            stats = tmp / "profile.stats"
            profiler = ["--profile", str(stats), "--profiler", "cprofile", "--savestats"] if args.cprofile else []
            proc = procs.start(
                [run.TWISTD, *profiler, "-n", "--pidfile=", "litegate", "--config", str(config),
                 "--listen", f"127.0.0.1:{port}"],
                env={"PYTHONPATH": str(run.ROOT), "PATH": ""},
            )
            run.wait_http(f"http://127.0.0.1:{port}/health")
            body = {"model": "claude" if args.load == "anthropic" else "gpt-4o",
                    "messages": [{"role": "user", "content": "Say hello"}]}
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            if args.load != "streams":
                run.wrk(url, body, 10, 1, tmp)  # warm-up
            collapsed = tmp / "stacks.txt"
            sampler = None
            if not args.cprofile:
                sampler = subprocess.Popen(
                    [spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "250",
                     "--nonblocking", "--output", str(collapsed)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                time.sleep(1)
            started = time.monotonic()
            if args.load == "streams":
                figures = run.concurrent_streams(port, proc.pid, args.streams, 0.1)
            else:
                figures = run.wrk(url, body, 50, args.seconds, tmp)
            took = time.monotonic() - started
            if sampler is not None:
                sampler.send_signal(2)  # SIGINT: py-spy writes what it has and exits
                sampler.wait(timeout=30)
            procs.stop(proc)
            print(f"{args.load}: {figures} in {took:.1f}s")
            if args.cprofile:
                for _ in range(100):
                    if stats.exists():
                        break
                    time.sleep(0.1)
                pstats.Stats(str(stats)).sort_stats("tottime").print_stats(args.top)
                result = stats
            else:
                summarize(collapsed, args.top)
                result = collapsed
            if args.keep:
                shutil.copy(result, args.keep)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
