"""The RPC replicas the front end spreads its calls over, kept current.

``RPC_URL`` holds one or more base URLs, comma-separated. A URL whose host is
a name is resolved again every ``RPC_RESOLVE_INTERVAL`` seconds and stands for
every address the name has (``docker compose up --scale rpc-server=3`` gives a
name with one address per replica), so replicas that come and go are noticed.
Calls go round-robin over the replicas that are up, one batch at a time, so
keep-alive pooling cannot pin all traffic to one of them. A replica that
refused a connection, or said it is draining, is skipped for a while.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address of `host`, in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class Endpoint:
    url: str  # base URL with an address for a host, e.g. http://10.0.0.3:8888
    down_until: float = 0.0


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_address(scheme: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"


class Endpoints:
    def __init__(
        self,
        urls: list[str],
        down_for: float = 2.0,
        resolve: Resolver = resolve_host,
    ) -> None:
        if not urls:
            raise ValueError("RPC_URL names no RPC service")
        self.urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        self.down_for = down_for
        self.resolve = resolve
        self._endpoints: list[Endpoint] = [Endpoint(u) for u in self.urls]
        self._next = 0

    def __len__(self) -> int:
        return len(self._endpoints)

    async def refresh(self) -> None:
        """Resolve the configured names again; keep the old list if resolving fails."""
        urls: list[str] = []
        for url in self.urls:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 80
            if _is_address(host):
                urls.append(url)
                continue
            try:
                addresses = await self.resolve(host, port)
            except OSError:
                return
            urls += [_with_address(parts.scheme, a, port) for a in addresses]
        if not urls:
            return
        known = {e.url: e for e in self._endpoints}
        self._endpoints = [known.get(u) or Endpoint(u) for u in dict.fromkeys(urls)]

    def pick(self) -> Endpoint:
        """The next replica that is up; if none is, the one that went down first."""
        now = time.monotonic()
        count = len(self._endpoints)
        for _ in range(count):
            endpoint = self._endpoints[self._next % count]
            self._next += 1
            if endpoint.down_until <= now:
                return endpoint
        return min(self._endpoints, key=lambda e: e.down_until)

    def mark_down(self, endpoint: Endpoint) -> None:
        endpoint.down_until = time.monotonic() + self.down_for
