"""The one deployment fixture: each test module gets its own topic prefix, receiver and
workers, shaped by the module's `DEPLOYMENT` (how many workers, which settings).

`make test` runs these modules on both cores (`-n 2 --dist loadscope`): a module's tests
stay on one xdist worker, so its module-scoped deployment is set up once, and no test
disturbs what another module uses (each has its own topics, receiver and workers; the
broker restart test has a broker of its own)."""

from __future__ import annotations

import fcntl
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from localdev.kafka import LocalKafka

from ..support.pipeline import Deployment

#: The longest modules, in seconds (`--durations` on the 2-core machine), handed out first
#: under xdist (with `--no-loadscope-reorder`) so that the two workers finish together;
#: the others follow in collection order. It orders tests, nothing else: a stale entry
#: costs time, never a result.
LONGEST = {"test_crash": 210, "test_duplicates": 120, "test_api": 105, "test_cli": 105,
           "test_failure_path": 50, "test_local_cluster": 45}


def _cost(item: pytest.Item) -> int:
    module = getattr(item, "module", None)
    return LONGEST.get(module.__name__.rpartition(".")[2], 0) if module else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # under xdist; otherwise as collected
        items.sort(key=lambda item: -_cost(item))  # stable: a module's order is kept


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # its waits come before pytest-timeout's
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Under xdist, a test marked `exclusive` (its assertions are about timing: a busy
    machine may break them) runs while the other worker runs no test: that worker's test
    in progress finishes first, and its next one waits. A test's protocol includes its
    module's deployment being set up or torn down, so nothing of the other module runs
    meanwhile but its idle worker processes."""
    if not hasattr(item.config, "workerinput"):
        yield
        return
    home = LocalKafka.from_env().home
    home.mkdir(parents=True, exist_ok=True)
    exclusive = item.get_closest_marker("exclusive") is not None
    # A reader-writer lock of two flocks: the gate, held by an exclusive test from before
    # it waits for the share until it ends, keeps new tests from starting meanwhile.
    with (home / "test-gate.lock").open("w") as gate, \
            (home / "test-share.lock").open("w") as share:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(share, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # both released as the files close


class DeploymentSpec(TypedDict, total=False):
    #: Workers started and ready before the first test (default 1; 0 for tests that start
    #: their own), or one entry per worker with settings of its own.
    workers: int | list[dict[str, str]]
    #: HOOKSTREAM_* settings over the test defaults (tests/support/pipeline.py).
    env: dict[str, str]


@pytest.fixture(scope="module")
def dep(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[Deployment]:
    spec: DeploymentSpec = getattr(request.module, "DEPLOYMENT", {})
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    deployment = Deployment(kafka_bootstrap, Path(tmp_path_factory.mktemp(name)),
                            **spec.get("env", {}))
    try:
        workers = spec.get("workers", 1)
        deployment.start_workers(workers if isinstance(workers, list) else [{}] * workers)
        yield deployment
    finally:
        deployment.close()
