"""A worker started as an unprivileged user from an empty, read-only directory, as the image
runs it (deploy/Dockerfile: uid 65534, HOOKSTREAM_HOME=/var/lib/hookstream).

The worker really runs as uid 65534 here: `unshare --mount` gives it a private mount
namespace in which the interpreter, the virtualenv, the checkout and the test's directories
are reachable at their own paths (the interpreter may live under /root, mode 700, and
pytest's temporary directories are 700 too), then `setpriv` drops root before Python starts.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

import streams

from ..support.pipeline import Deployment, wait_webhook_state
from ..support.workers import WorkerProcess
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

#: nobody: the image's user.
NOBODY = 65534


DEPLOYMENT: DeploymentSpec = {"workers": 0}


def _enterable_by_nobody(path: Path) -> bool:
    st = path.stat()
    return bool(st.st_mode & stat.S_IXOTH
                or (st.st_uid == NOBODY and st.st_mode & stat.S_IXUSR)
                or (st.st_gid == NOBODY and st.st_mode & stat.S_IXGRP))


def _closed_ancestor(path: Path) -> Path | None:
    """The highest directory above `path` that nobody may not enter (e.g. /root, mode 700)."""
    return next((p for p in reversed(path.parents) if not _enterable_by_nobody(p)), None)


def _as_nobody(stages: Path, exposed: Iterable[Path], cwd: Path,
               read_only: Iterable[Path] = ()) -> list[str]:
    """A wrapper: run the command as uid/gid 65534 in cwd, in a private mount namespace
    where every `exposed` directory is reachable at its own path and every `read_only` one
    is mounted read-only.

    Each directory nobody may not enter is covered by a stage: a directory holding, at
    their paths relative to it, recursive bind mounts of the exposed directories below it,
    and nothing else.
    """
    wanted = {p.resolve() for p in exposed}
    # A path inside another exposed path comes along with it.
    wanted = {p for p in wanted if not any(q in p.parents for q in wanted)}
    for path in wanted:
        assert _enterable_by_nobody(path), f"{path} must be enterable by uid {NOBODY}"
    q = shlex.quote
    script = [f"mount --bind -o ro {q(str(p))} {q(str(p))}" for p in read_only]
    staged: dict[Path, Path] = {}
    for path in sorted(wanted):
        closed = _closed_ancestor(path)
        if closed is None:
            continue
        stage = staged.setdefault(closed, stages / f"stage{len(staged)}")
        target = stage / path.relative_to(closed)
        target.mkdir(parents=True, exist_ok=True)
        for made in (target, *target.parents):
            made.chmod(0o755)
            if made == stage:
                break
        script.append(f"mount --rbind {q(str(path))} {q(str(target))}")
    # The stages live under `stages`: cover a directory above them only once every stage
    # has been mounted where it belongs.
    for closed in sorted(staged, key=lambda c: c in stages.parents):
        script.append(f"mount --rbind {q(str(staged[closed]))} {q(str(closed))}")
    script.append(f"cd {q(str(cwd))}")
    script.append(f'exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- "$0" "$@"')
    return ["unshare", "--mount", "sh", "-c", " && ".join(script)]


def _interpreter_and_checkout() -> list[Path]:
    """What the worker's Python reads: the virtualenv, the installation its interpreter
    links to, and the checkout (the package is installed editable)."""
    return [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent,
            Path(streams.__file__).resolve().parent.parent]


def _directory(path: Path, owner: int, mode: int) -> Path:
    path.mkdir()
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


def _worker(dep: Deployment, tmp: Path, home: Path, exposed: list[Path],
            read_only: Iterable[Path] = (), env: dict[str, str] | None = None) -> WorkerProcess:
    """A worker as nobody whose working directory is empty and read-only to it."""
    cwd = _directory(tmp / "cwd", owner=0, mode=0o555)
    stages = _directory(tmp / "stages", owner=0, mode=0o755)
    wrapper = _as_nobody(stages, [*_interpreter_and_checkout(), cwd, *exposed], cwd, read_only)
    return WorkerProcess(env or dep.env, dep.home, f"nobody-{uuid.uuid4().hex[:6]}", wrapper,
                         cwd=cwd, hookstream_home=home)


def _uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return [int(uid) for uid in line.split()[1:]]


def test_a_worker_as_nobody_in_a_read_only_directory_creates_its_home_and_delivers(
        dep: Deployment, tmp_path: Path) -> None:
    parent = _directory(tmp_path / "var-lib", owner=NOBODY, mode=0o755)
    home = parent / "hookstream"  # does not exist: the worker must create it
    worker = _worker(dep, tmp_path, home, exposed=[parent])
    dep.workers.append(worker)  # stopped with the deployment
    worker.start()
    worker.wait_ready()

    assert worker.process is not None
    assert _uids(worker.process.pid) == [NOBODY] * 4
    datadir = home / f"worker-{worker.port}"
    assert datadir.is_dir()
    assert home.stat().st_uid == NOBODY and datadir.stat().st_uid == NOBODY
    assert list((tmp_path / "cwd").iterdir()) == []

    wh, ws = f"wh_fresh_{uuid.uuid4().hex[:6]}", "ws_fresh"
    dep.create_webhook(wh, ws, f"/fresh/{wh}", ["task.created"])
    wait_webhook_state(dep, wh, {"active": True})
    event_id = dep.publish("task.created", ws, {"id": "task_fresh"})
    received = dep.receiver.wait_for(lambda rs: any(r.path == f"/fresh/{wh}" for r in rs),
                                     what="the delivery from the worker running as nobody")
    delivery = next(r for r in received if r.path == f"/fresh/{wh}")
    assert delivery.headers["x-webhook-id"] == wh
    assert json.loads(delivery.body)["id"] == event_id


@pytest.mark.parametrize("case", ["permission denied", "read-only file system",
                                  "a file in the way", "permission denied, no master key"])
def test_an_unusable_home_is_one_clear_line_and_a_non_zero_exit(
        dep: Deployment, tmp_path: Path, case: str) -> None:
    read_only: list[Path] = []
    env = None
    if case == "permission denied, no master key":
        # Without HOOKSTREAM_MASTER_KEY a development key is written in HOOKSTREAM_HOME.
        env = {k: v for k, v in dep.env.items() if k != "HOOKSTREAM_MASTER_KEY"}
        case = "permission denied"
    if case == "permission denied":  # exists, but root's (the image before the fix)
        exposed = home = _directory(tmp_path / "hookstream", owner=0, mode=0o755)
    elif case == "read-only file system":  # nobody's, on a read-only mount
        exposed = _directory(tmp_path / "ro", owner=NOBODY, mode=0o755)
        home = exposed / "hookstream"
        read_only.append(exposed)
    else:  # HOOKSTREAM_HOME names a file
        exposed = _directory(tmp_path / "state", owner=NOBODY, mode=0o755)
        home = exposed / "hookstream"
        home.write_text("not a directory\n")
        os.chown(home, NOBODY, NOBODY)
    worker = _worker(dep, tmp_path, home, exposed=[exposed], read_only=read_only, env=env)
    worker.start()
    try:
        code = worker.wait_exit()
    finally:
        worker.kill()

    datadir = home / f"worker-{worker.port}"
    reason = {"permission denied": f"permission denied (uid {NOBODY})",
              "read-only file system": "read-only file system",
              "a file in the way": f"{home} is a file, not a directory"}[case]
    assert code != 0
    assert worker.log_text().splitlines() == [
        f"error: HOOKSTREAM_HOME={home}: cannot create {datadir}: {reason}"], worker.log_text()
