"""The kernel's TCP listeners, read from /proc/net/tcp and /proc/net/tcp6."""

from __future__ import annotations

from pathlib import Path

LISTEN = "0A"  # the state column of a listening socket


def listeners(port: int) -> dict[str, int]:
    """Local address (hex, as the kernel prints it) -> connections waiting to be accepted.

    For a listening socket the kernel's rx_queue column is its accept queue.
    """
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found[address] = int(fields[4].split(":")[1], 16)
    return found
