"""Pulls that wait (``wait``): woken by a send through any replica, bounded, never lost."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import orjson

from launcher.stack import Stack
from tests.client import http_call, request
from tests.stacks import StackFactory

JSON = {"Content-Type": "application/json"}


def new_chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"a-{tag}:b-{tag}"


def send(base: str, chat: str, text: str) -> dict[str, Any]:
    sender = chat.split(":")[0]
    body = orjson.dumps({"chat": chat, "sender": sender, "text": text})
    status, reply, _ = http_call(base, "POST", "/api/send", body, JSON)
    assert status == 200, reply
    return reply  # type: ignore[no-any-return]


def pull(base: str, chat: str, **params: Any) -> tuple[int, dict[str, Any], float]:
    query = "&".join(f"{k}={quote(str(v))}" for k, v in {"chat": chat, **params}.items())
    return http_call(base, "GET", f"/api/pull?{query}", timeout=40)


def gauge(base: str, name: str) -> float:
    text = request(base, "GET", "/metrics").raw.decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def two_replicas(make_stack: StackFactory, redis_url: str) -> tuple[Stack, str, str]:
    """Two RPC replicas, each with a front end of its own: (stack, waiter base, sender base)."""
    s = make_stack(redis_url, start=False, RPC_DRAIN_SECONDS="0.5")
    first, second = s.add_rpc(port=0), s.add_rpc(port=0)
    waiter = s.add_http(port=0, RPC_URL=first.url).url
    sender = s.add_http(port=0, RPC_URL=second.url).url
    return s, waiter, sender


def tail(base: str, chat: str, count: int, seconds: float = 25.0) -> list[str]:
    """Loop ``cursor = tail_cursor`` with a wait until `count` messages came (or time is up)."""
    got: list[str] = []
    cursor = 0
    deadline = time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        status, page, _ = pull(base, chat, cursor=cursor, wait=5, limit=7)
        assert status == 200, page
        got += [m["text"] for m in page["messages"]]
        assert page["tail_cursor"] >= cursor
        cursor = page["tail_cursor"]
    return got


class TestWaitParameter:
    def test_bad_wait_is_a_400_naming_it(self, stack: Stack, chat: str) -> None:
        for bad in ("-1", "1.5", "abc", "1e3", "0x10", " 2"):
            status, body, _ = pull(stack.base, chat, wait=bad)
            assert status == 400, (bad, body)
            assert body["msg"].startswith("wait:"), body

    def test_wait_zero_answers_at_once(self, stack: Stack, chat: str) -> None:
        status, body, seconds = pull(stack.base, chat, wait=0)
        assert status == 200 and body["messages"] == []
        assert body["tail_cursor"] == 0
        assert seconds < 0.5

    def test_a_page_with_messages_answers_at_once(self, stack: Stack, chat: str) -> None:
        sent = send(stack.base, chat, "here")
        status, body, seconds = pull(stack.base, chat, wait=20)
        assert status == 200 and [m["text"] for m in body["messages"]] == ["here"]
        assert body["tail_cursor"] == sent["send_time"] + 1
        assert seconds < 1

    def test_no_message_answers_empty_at_wait(self, stack: Stack, chat: str) -> None:
        send(stack.base, chat, "old")
        cursor = send(stack.base, chat, "older")["send_time"] + 1
        status, body, seconds = pull(stack.base, chat, cursor=cursor, wait=1)
        assert status == 200 and body["messages"] == []
        assert body["tail_cursor"] == cursor
        assert 0.9 < seconds < 2.5

    def test_wait_above_the_maximum_waits_the_maximum(
        self, redis_url: str, make_stack: StackFactory
    ) -> None:
        s = make_stack(redis_url, PULL_WAIT_MAX="1")
        status, body, seconds = pull(s.base, new_chat(), wait=10**30)
        assert status == 200 and body["messages"] == []
        assert 0.9 < seconds < 2.5

    def test_reverse_pull_carries_no_tail_cursor(self, stack: Stack, chat: str) -> None:
        send(stack.base, chat, "x")
        _, body, _ = pull(stack.base, chat, reverse="true", wait=3)
        assert [m["text"] for m in body["messages"]] == ["x"]
        assert "tail_cursor" not in body

    def test_reverse_pull_of_an_empty_chat_wakes_on_its_first_message(
        self, stack: Stack, chat: str
    ) -> None:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(pull, stack.base, chat, reverse="true", wait=10)
            assert eventually(lambda: gauge(stack.base, "pullchat_http_waiting_pulls") >= 1)
            send(stack.base, chat, "first")
            status, body, seconds = waiting.result(timeout=10)
        assert status == 200 and [m["text"] for m in body["messages"]] == ["first"]
        assert seconds < 5


def test_wait_answers_soon_after_a_send_through_another_replica(
    redis_url: str, make_stack: StackFactory
) -> None:
    """Waiter and sender on different front ends and replicas: the send wakes the waiter."""
    _, waiter, sender = two_replicas(make_stack, redis_url)
    chat = new_chat()
    delays = []
    with ThreadPoolExecutor(1) as pool:
        for i in range(5):
            cursor = send(sender, chat, f"before {i}")["send_time"] + 1
            waiting = pool.submit(pull, waiter, chat, cursor=cursor, wait=20)
            assert eventually(lambda: gauge(waiter, "pullchat_http_waiting_pulls") == 1)
            time.sleep(0.05)
            sent = send(sender, chat, f"wake {i}")
            acked = time.monotonic()
            status, body, _ = waiting.result(timeout=25)
            delays.append(time.monotonic() - acked)
            assert status == 200
            assert [m["send_time"] for m in body["messages"]] == [sent["send_time"]]
    # Timing goals are measured in bench/; this only says the wait was cut short.
    assert max(delays) < 2, delays


def tails_while_sending(waiter: str, sender: str, chats: list[str], per_chat: int) -> None:
    """A tail loop per chat on `waiter` while writers send through both front ends.

    Each tail must receive every message of its chat exactly once, in order.
    """
    with ThreadPoolExecutor(len(chats) * 2) as pool:
        tails = [pool.submit(tail, waiter, chat, per_chat) for chat in chats]
        time.sleep(0.3)

        def write(chat: str) -> None:
            for i in range(per_chat):
                send(sender if i % 2 else waiter, chat, str(i))  # through both replicas
                if i % 5 == 0:
                    time.sleep(0.05)  # let the tails catch up, so some of them wait

        for w in [pool.submit(write, chat) for chat in chats]:
            w.result(timeout=60)
        for t in tails:
            assert t.result(timeout=60) == [str(i) for i in range(per_chat)]


def test_tail_loops_get_every_message_once_in_order(
    redis_url: str, make_stack: StackFactory
) -> None:
    """Tail loops on several chats while senders write through two replicas."""
    _, waiter, sender = two_replicas(make_stack, redis_url)
    tails_while_sending(waiter, sender, [new_chat() for _ in range(4)], 30)


def test_many_waiters_of_one_page_wake_with_one_read(
    redis_url: str, make_stack: StackFactory
) -> None:
    s = make_stack(redis_url)
    chat = new_chat()
    cursor = send(s.base, chat, "seen")["send_time"] + 1
    with ThreadPoolExecutor(20) as pool:
        waiting = [pool.submit(pull, s.base, chat, cursor=cursor, wait=20) for _ in range(20)]
        assert eventually(lambda: gauge(s.base, "pullchat_http_waiting_pulls") == 20)
        time.sleep(0.2)  # the watch is confirmed and looked at
        reads_before = gauge(s.base, "pullchat_http_wake_reads_total")
        send(s.base, chat, "news")
        pages = [w.result(timeout=25) for w in waiting]
    assert all(p[0] == 200 and [m["text"] for m in p[1]["messages"]] == ["news"] for p in pages)
    assert gauge(s.base, "pullchat_http_wake_reads_total") - reads_before == 1


def open_waits(base: str, chat: str, count: int) -> list[socket.socket]:
    """`count` raw connections, each with a waiting pull sent and its answer not read."""
    host, port = base.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(f"GET /api/pull?chat={chat}&wait=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sockets.append(sock)
    return sockets


def test_clients_that_go_away_leave_no_waiter(stack: Stack) -> None:
    chat = new_chat()
    sockets = open_waits(stack.base, chat, 25)
    try:
        assert eventually(lambda: gauge(stack.base, "pullchat_http_waiting_pulls") == 25)
    finally:
        for sock in sockets:
            sock.close()
    assert eventually(lambda: gauge(stack.base, "pullchat_http_waiting_pulls") == 0, 3)
    # And the chat still wakes a new waiter.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(pull, stack.base, chat, wait=20)
        assert eventually(lambda: gauge(stack.base, "pullchat_http_waiting_pulls") == 1)
        send(stack.base, chat, "still here")
        assert waiting.result(timeout=25)[1]["messages"][0]["text"] == "still here"


def wait_all(pool: ThreadPoolExecutor, base: str, chats: list[str], wait: int) -> list[Future[Any]]:
    return [pool.submit(pull, base, chat, wait=wait) for chat in chats]


def test_redis_down_answers_waits_503_and_they_work_again(make_stack: StackFactory) -> None:
    s = make_stack(None, RPC_TIMEOUT="1", REDIS_TIMEOUT="0.3")
    assert s.redis is not None
    chats = [new_chat() for _ in range(10)]
    with ThreadPoolExecutor(len(chats)) as pool:
        waiting = wait_all(pool, s.base, chats, 25)
        assert eventually(lambda: gauge(s.base, "pullchat_http_waiting_pulls") == len(chats))
        time.sleep(0.2)
        s.redis.stop()
        stopped = time.monotonic()
        answers = [w.result(timeout=30) for w in waiting]
        took = time.monotonic() - stopped
    assert [a[0] for a in answers] == [503] * len(chats), answers
    assert all("store" in a[1]["msg"] for a in answers)
    assert took < 5, took
    s.start_redis()
    # Waits work again: every chat's next message reaches its waiter.
    with ThreadPoolExecutor(len(chats)) as pool:

        def waits_again(chat: str) -> list[str]:
            ok = eventually(lambda: pull(s.base, chat)[0] == 200, 10)
            assert ok
            return tail(s.base, chat, 1, 15)

        waiting = [pool.submit(waits_again, chat) for chat in chats]
        assert eventually(lambda: gauge(s.base, "pullchat_http_waiting_pulls") >= 1, 15)
        time.sleep(0.5)
        for chat in chats:
            send(s.base, chat, "back")
        assert [w.result(timeout=30) for w in waiting] == [["back"]] * len(chats)


def test_a_replica_killed_under_waits_loses_none(redis_url: str, make_stack: StackFactory) -> None:
    """Waits parked through a front end of two replicas; one replica dies: all still wake."""
    s = make_stack(redis_url, start=False, RPC_TIMEOUT="1")
    first, second = s.add_rpc(port=0), s.add_rpc(port=0)
    base = s.add_http(port=0, RPC_URL=f"{first.url},{second.url}").url
    for victim, survivor in ((first, second), (second, first)):
        chats = [new_chat() for _ in range(10)]
        with ThreadPoolExecutor(len(chats)) as pool:
            waiting = wait_all(pool, base, chats, 25)
            assert eventually(lambda: gauge(base, "pullchat_http_waiting_pulls") == 10)
            time.sleep(0.2)
            victim.signal(9)
            time.sleep(0.5)  # the stream moves to the survivor
            sent = {chat: send(base, chat, "after")["send_time"] for chat in chats}
            answers = [w.result(timeout=30) for w in waiting]
        for chat, (status, body, seconds) in zip(chats, answers, strict=True):
            assert status == 200, body
            assert [m["send_time"] for m in body["messages"]][-1] == sent[chat]
            assert seconds < 20
        victim.stop()
        victim.start()
        assert survivor.alive()


def test_draining_replica_moves_the_waits(redis_url: str, make_stack: StackFactory) -> None:
    s = make_stack(redis_url, start=False, RPC_DRAIN_SECONDS="0.5")
    first, second = s.add_rpc(port=0), s.add_rpc(port=0)
    base = s.add_http(port=0, RPC_URL=f"{first.url},{second.url}").url
    chats = [new_chat() for _ in range(5)]
    with ThreadPoolExecutor(len(chats)) as pool:
        waiting = wait_all(pool, base, chats, 25)
        assert eventually(lambda: gauge(base, "pullchat_http_waiting_pulls") == len(chats))
        first.stop()  # SIGTERM: it drains, closing its watch streams first
        assert eventually(lambda: gauge(second.url, "pullchat_rpc_watch_streams") == 1)
        time.sleep(0.3)
        for chat in chats:
            send(base, chat, "moved")
        answers = [w.result(timeout=30) for w in waiting]
    assert all(a[0] == 200 and a[1]["messages"][-1]["text"] == "moved" for a in answers)


def test_waits_on_a_cluster(cluster_url: str, make_stack: StackFactory) -> None:
    """The same on the three-master cluster: tails on chats of every master, two replicas."""
    _, waiter, sender = two_replicas(make_stack, cluster_url)
    tails_while_sending(waiter, sender, [new_chat() for _ in range(6)], 12)


def test_stopping_the_front_end_answers_its_waits(redis_url: str, make_stack: StackFactory) -> None:
    s = make_stack(redis_url)
    chat = new_chat()
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(pull(s.base, chat, wait=25)))
    thread.start()
    assert eventually(lambda: gauge(s.base, "pullchat_http_waiting_pulls") == 1)
    started = time.monotonic()
    s.http.stop()
    thread.join(30)
    assert results and results[0][0] == 200 and results[0][1]["messages"] == []
    assert time.monotonic() - started < 10
