"""The one deployment fixture: each test module gets its own topic prefix, receiver and
workers, shaped by the module's `DEPLOYMENT` (how many workers, which settings)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from ..support.pipeline import Deployment


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
