"""/metrics on both tiers: Prometheus text, counts that add up across worker processes."""

from __future__ import annotations

import re
import time
import uuid

import orjson

from launcher.stack import Stack
from tests.client import http_call
from tests.stacks import StackFactory


def scrape(base: str) -> dict[str, float]:
    """Samples by name{labels}, from a /metrics page."""
    import urllib.request

    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], pattern: str) -> float:
    return sum(v for k, v in samples.items() if re.fullmatch(pattern, k))


def exercise(stack: Stack, sends: int) -> None:
    chat = f"m{uuid.uuid4().hex[:8]}:n"
    body = orjson.dumps({"chat": chat, "sender": "n", "text": "x"})
    for _ in range(sends):
        assert http_call(stack.base, "POST", "/api/send", body)[0] == 200
    assert http_call(stack.base, "GET", "/api/pull?chat=nocolon")[0] == 400
    assert http_call(stack.base, "GET", "/nothing/here")[0] == 404


def test_metrics_count_by_route_and_status(stack: Stack) -> None:
    """Sends, a 400 and a 404 show up in both tiers' counters."""
    http_before, rpc_before = scrape(stack.base), scrape(stack.rpc_url)
    exercise(stack, 5)
    http_after, rpc_after = scrape(stack.base), scrape(stack.rpc_url)

    def delta(after: dict[str, float], before: dict[str, float], pattern: str) -> float:
        return total(after, pattern) - total(before, pattern)

    sends = r'pullchat_http_requests_total\{route="send",status="200"\}'
    assert delta(http_after, http_before, sends) == 5
    bad = r'pullchat_http_requests_total\{route="pull",status="400"\}'
    assert delta(http_after, http_before, bad) == 1
    unmatched = r'pullchat_http_requests_total\{route="unmatched",status="404"\}'
    assert delta(http_after, http_before, unmatched) == 1
    rpc_sends = r'pullchat_rpc_calls_total\{code="0",method="send"\}'
    assert delta(rpc_after, rpc_before, rpc_sends) == 5
    assert delta(rpc_after, rpc_before, r"pullchat_redis_roundtrip_seconds_count") >= 1


def test_metrics_add_up_over_workers(redis_url: str, make_stack: StackFactory) -> None:
    """With two workers per tier, /metrics sums every worker's samples."""
    s = make_stack(redis_url, HTTP_WORKERS="2", RPC_WORKERS="2")
    exercise(s, 40)
    http, rpc = scrape(s.base), scrape(s.rpc_url)
    # Sanic's worker manager ignores SIGTERM until it has its workers'
    # start-up acknowledgements, which can take a moment after they serve.
    time.sleep(2)
    assert total(http, r'pullchat_http_requests_total\{route="send",status="200"\}') == 40
    assert total(rpc, r'pullchat_rpc_calls_total\{code="0",method="send"\}') == 40
