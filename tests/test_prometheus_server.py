"""A real Prometheus server scrapes a running gateway; PromQL returns the exact tokens and cost."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.conftest import BACKEND_KEY, CHATBOT_KEY, Gateway
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply
from tests.test_metrics import chat, hi


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def promql(http: Any, base: str, query: str) -> dict[str, float]:
    response = await http.get(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
    data = json.loads(await response.content())
    assert data["status"] == "success", data
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in data["data"]["result"]}


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_prometheus_scrapes_exact_tokens_and_cost(gateway: Gateway, fake_openai: FakeOpenAI, http: Any, tmp_path: Path) -> None:
    """After requests from two apps (streaming and not, both providers, an upstream 429),
    PromQL over Prometheus's own scrape returns the exact tokens and cost."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (make test installs Debian's package as root)")
    target = f"127.0.0.1:{gateway.port.getHost().port}"
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: litegate\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    web = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={web}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        fake_openai.queue(Reply(429, {"content-type": "application/json", "retry-after": "1"}, b'{"error":{"message":"slow","type":"requests","param":null,"code":"rate_limit_exceeded"}}'))
        runs = [
            (BACKEND_KEY, hi("gpt-4o")),  # 429
            (BACKEND_KEY, hi("gpt-4o")),  # openai 5/5
            (BACKEND_KEY, hi("gpt-4o", stream=True)),  # 5/5
            (BACKEND_KEY, hi("claude-sonnet")),  # anthropic 12/4
            (CHATBOT_KEY, hi("claude-sonnet", stream=True)),  # 12/4
            (CHATBOT_KEY, hi("gpt-4o", stream=True, stream_options={"include_usage": True})),  # 5/5
        ]
        statuses = [(await chat(http, gateway, key, body))[0] for key, body in runs]
        assert statuses == [429, 200, 200, 200, 200, 200]
        base = f"http://{web}"
        for _ in range(300):
            await task.deferLater(reactor, 0.1, lambda: None)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                seen = await promql(http, base, "sum(llm_requests_total)")
            except Exception:
                continue
            if list(seen.values()) == [6.0]:
                break
        else:
            pytest.fail("Prometheus never scraped the final counts")
        tokens = await promql(http, base, "sum by (virtual_key, direction) (llm_tokens_total)")
        assert tokens == {
            '{"direction": "completion", "virtual_key": "chatbot"}': 9.0,
            '{"direction": "completion", "virtual_key": "my-backend"}': 14.0,
            '{"direction": "prompt", "virtual_key": "chatbot"}': 17.0,
            '{"direction": "prompt", "virtual_key": "my-backend"}': 22.0,
        }
        cost = await promql(http, base, "sum by (virtual_key) (llm_cost_dollars_total)")
        gpt4o = (5 * 2.5 + 5 * 10) / 1e6
        sonnet = (12 * 3 + 4 * 15) / 1e6
        assert cost['{"virtual_key": "my-backend"}'] == pytest.approx(2 * gpt4o + sonnet)
        assert cost['{"virtual_key": "chatbot"}'] == pytest.approx(gpt4o + sonnet)
        errors = await promql(http, base, "sum by (provider, error_type) (llm_provider_errors_total)")
        assert errors == {'{"error_type": "rate_limited", "provider": "openai"}': 1.0}
        # The README's example query: increase() needs two scrapes of each series.
        for _ in range(50):
            per_hour = await promql(http, base, "sum by (virtual_key) (increase(llm_tokens_total[1h]))")
            if len(per_hour) == 2:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        assert set(per_hour) == {'{"virtual_key": "chatbot"}', '{"virtual_key": "my-backend"}'}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
