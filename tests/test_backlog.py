"""Many clients connecting at once are queued by the kernel, none dropped (HTTP_BACKLOG).

With Sanic's own listen backlog of 100, the handshakes beyond it are dropped
and retried one to three seconds later; the front end listens with a larger
one, so a burst of connections waits in the accept queue instead.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from launcher.stack import Stack
from tests.stacks import StackFactory

BURST = 500  # five times Sanic's default backlog, within a default file limit


def accept_queue(port: int) -> int:
    """Connections waiting to be accepted on the listener at `port` (rx_queue in /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def answer_status(sock: socket.socket) -> bytes:
    """The status line of the answer to one GET /ping on `sock`."""
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: pullchat\r\nConnection: close\r\n\r\n")
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.split(b"\r\n", 1)[0]


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
            sock.settimeout(10)
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
            sock.setblocking(True)
            sock.settimeout(10)
        statuses = {answer_status(sock) for sock in sockets}
        assert statuses == {b"HTTP/1.1 200 OK"}, statuses
    finally:
        for sock in sockets:
            sock.close()
