"""Many clients connecting at once are queued by the kernel, none dropped (HTTP_BACKLOG).

With Sanic's own listen backlog of 100, the handshakes beyond it are dropped
and retried one to three seconds later; the front end listens with a larger
one, so a burst of connections waits in the accept queue instead.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time

from launcher.stack import Stack
from tests.netstat import listeners
from tests.stacks import StackFactory

BURST = 500  # five times Sanic's default backlog, within a default file limit
LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp prints it


def accept_queue(port: int) -> int:
    """Connections waiting to be accepted on the front end's listener at 127.0.0.1:`port`."""
    return listeners(port)[LOOPBACK]


def answer_status(sock: socket.socket) -> int:
    """The status of the answer to one GET /ping on the connected `sock`."""
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = sock  # already connected: http.client uses it as it is
    conn.request("GET", "/ping", headers={"Connection": "close"})
    return conn.getresponse().status


def test_a_burst_of_connections_waits_in_the_accept_queue(
    redis_url: str, make_stack: StackFactory
) -> None:
    stack: Stack = make_stack(redis_url)
    port = int(stack.env["HTTP_PORT"])
    stack.http.signal(signal.SIGSTOP)  # nothing is accepted: every handshake must queue
    sockets: list[socket.socket] = []
    try:
        for _ in range(BURST):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            sockets.append(sock)
        deadline = time.monotonic() + 5
        while accept_queue(port) < BURST and time.monotonic() < deadline:
            time.sleep(0.05)
        queued = accept_queue(port)
    finally:
        stack.http.signal(signal.SIGCONT)
    try:
        assert queued == BURST, f"{queued} of {BURST} connections queued"
        for sock in sockets:
            sock.settimeout(10)
        statuses = {answer_status(sock) for sock in sockets}
        assert statuses == {200}, statuses
    finally:
        for sock in sockets:
            sock.close()
