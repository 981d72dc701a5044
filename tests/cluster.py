"""A real three-master Redis Cluster on loopback ports, for the cluster tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from launcher.procs import Child, free_port, redis_ping, redis_server_binary


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class LocalCluster:
    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        self.data_dir = data_dir
        self.ports = [cluster_port() for _ in range(masters)]
        self.nodes: list[Child] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is required for the cluster tests (apt-get install redis-tools)"
        for port in self.ports:
            node_dir = self.data_dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                redis_server_binary(),
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--appendonly", "yes", "--save", "",
            ]  # fmt: skip
            probe = redis_ping(f"redis://127.0.0.1:{port}/0")
            self.nodes.append(Child(f"redis-{port}", argv, probe, log=node_dir / "log").start())
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        return self

    def wait_ok(self, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(self.state(p) == "ok" for p in self.ports):
                return
            time.sleep(0.1)
        raise AssertionError("the cluster did not reach state ok")

    @staticmethod
    def state(port: int) -> str:
        client = redis.Redis(port=port, socket_timeout=2)
        try:
            info = client.execute_command("CLUSTER", "INFO").decode()
        finally:
            client.close()
        for line in info.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return ""

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def migrate_slot(slot: int, ports: list[int]) -> tuple[int, int]:
    """Move one hash slot, keys and all, from its owner to another master.

    Returns (from port, to port). Clients meanwhile get ASK and TRYAGAIN
    redirections, which redis-py follows.
    """
    clients = {p: redis.Redis(port=p, socket_timeout=5) for p in ports}
    try:
        ids = {p: c.execute_command("CLUSTER", "MYID").decode() for p, c in clients.items()}
        owner = next(p for p, c in clients.items() if _owns(c, slot))
        target = next(p for p in ports if p != owner)
        src, dst = clients[owner], clients[target]
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 50):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            time.sleep(0.05)  # let clients run into the half-moved slot
        # The new owner first, then the old one, so no two nodes send a client
        # back and forth with MOVED.
        for p in [target, owner, *(p for p in ports if p not in (owner, target))]:
            clients[p].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return owner, target
    finally:
        for c in clients.values():
            c.close()


def _owns(client: redis.Redis, slot: int) -> bool:
    myself = client.execute_command("CLUSTER", "MYID").decode()
    for entry in client.execute_command("CLUSTER", "SLOTS"):
        start, end, master = entry[0], entry[1], entry[2]
        if start <= slot <= end:
            return bool(master[2].decode() == myself)
    return False
