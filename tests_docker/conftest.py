"""The session's engine and compose project, owned by one fixture.

`engine` starts dockerd, builds the local base images (deploy/local-base-images.sh)
and hands out both Compose CLIs; `stack` brings the default stack up on it with
`docker-compose up -d --build`. Whatever happens, the project is taken down with
its volumes and dockerd is stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from launcher.procs import free_port
from tests.figures import Figures
from tests_docker.engine import (
    DEFAULT_COUNTS,
    DOCKER_ROOT,
    ROOT,
    Compose,
    Docker,
    Dockerd,
    Engine,
    Failed,
    compose_v2_config,
    run,
)

IMAGE_VARIABLES = ("PYTHON_IMAGE=", "REDIS_IMAGE=")  # the script's last lines
TOOLS = {  # command: the Debian package that has it
    "dockerd": "docker.io",
    "docker": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
    "tar": "tar",
}

figures = Figures()
_phases: list[tuple[str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    figures.collect(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long the engine and its images took, then what the tests recorded."""
    phases = [(name, f"{seconds:.1f} s") for name, seconds in _phases]
    figures.write(terminalreporter, *([("engine and images", phases)] if phases else []))


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Record how long the block took, for the summary."""
    started = time.monotonic()
    try:
        yield
    finally:
        _phases.append((name, time.monotonic() - started))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """dockerd of our own, the local base images on it, and both Compose CLIs."""
    missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}; .ci/run installs them (as root)")
    if os.geteuid() != 0:
        pytest.fail("dockerd and debootstrap need root")
    dockerd = Dockerd(DOCKER_ROOT)
    with timed("dockerd start"):
        dockerd.start()
    docker = Docker(dockerd.env())
    eng: Engine | None = None
    try:
        # The Compose v2 plugin is fetched (once) while the base images build.
        with ThreadPoolExecutor(1) as pool:
            plugin = pool.submit(compose_v2_config, DOCKER_ROOT)
            with timed("local base images (deploy/local-base-images.sh)"):
                script = str(ROOT / "deploy" / "local-base-images.sh")
                done = run([script], dockerd.env(), timeout=900)
            with timed("compose v2 plugin, after the images"):
                v2_config = plugin.result(timeout=300)
        lines = done.stdout.splitlines()
        images = dict(line.split("=", 1) for line in lines if line.startswith(IMAGE_VARIABLES))
        assert set(images) == {"PYTHON_IMAGE", "REDIS_IMAGE"}, done.stdout
        port, cluster_port = free_port(), free_port()
        while cluster_port == port:
            cluster_port = free_port()
        env = dockerd.env(
            **images,
            PUBLISH_ADDRESS="127.0.0.1",
            PUBLISH_PORT=str(port),
            PUBLISH_PORT_CLUSTER=str(cluster_port),
        )
        eng = Engine(
            dockerd=dockerd,
            docker=docker,
            v1=Compose(["docker-compose"], env),
            v2=Compose(["docker", "compose"], dict(env, DOCKER_CONFIG=str(v2_config))),
            images=images,
            port=port,
            cluster_port=cluster_port,
        )
        yield eng
    finally:
        if eng is None or not eng.stopped:
            _clean_up(docker)
        dockerd.stop()


def _clean_up(docker: Docker) -> None:
    """What a failed session may have left: the project (with its volumes), old builds."""
    try:
        if docker.project_containers():
            down = ["--profile", "cluster", "down", "-v", "--remove-orphans", "-t", "20"]
            Compose(["docker-compose"], docker.env)(*down, timeout=180, check=False)
        # Old builds of the app image, untagged by newer ones; the base images stay.
        docker("image", "prune", "-f", timeout=120, check=False)
    except Failed as exc:
        print(f"clean-up: {exc}")


@pytest.fixture(scope="session")
def stack(engine: Engine) -> Engine:
    """The default stack, built and up on the local base images, every container healthy."""
    with timed("docker-compose up -d --build"):
        engine.v1("up", "-d", "--build", timeout=900)
    with timed("default stack healthy after up"):
        engine.docker.wait_healthy(DEFAULT_COUNTS, timeout=120)
    return engine
