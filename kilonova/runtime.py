"""The cloud running on a state directory: its lock, and what it publishes for ``status``, ``stop`` and ``manage``.

``kilonova up`` holds an exclusive ``flock`` on ``<state dir>/kilonova.lock`` for as long as it runs (the
kernel drops it when the process ends, however it ends), so a second ``up`` on the same directory is
refused before it touches anything. The file holds JSON: the holder's pid, and once every port is bound
and every service started, its endpoints and ports.

A service that owns files in the state directory (``Service.lock_name``: the volume service's volumes, a
compute host's guests, the L3 agent's routers) is run by one process at a time: ``kilonova serve`` and
``up`` also hold ``<state dir>/kilonova-<lock name>.lock`` for each such service they run, taken the same
way. The other services take none, so that several ``kilonova serve`` processes share a state directory:
an API is held to its port by the port itself, and conductors and schedulers run as many as wanted on a
host, as upstream's workers.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = "kilonova.lock"


class StateDirBusy(RuntimeError):
    """Another process holds the state directory."""


class PortInUse(RuntimeError):
    """A port a service must listen on is taken."""


def _read(path: Path) -> dict:
    for _ in range(5):   # the holder may be rewriting it at this very moment
        try:
            text = path.read_text()
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            time.sleep(0.02)
        except OSError:
            return {}
    return {}


def running(state_dir: Path) -> dict | None:
    """What the cloud running on ``state_dir`` published (``{}`` before it says), or None when none runs."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(path)
    finally:
        os.close(fd)   # also drops the shared lock we may have taken
    return None


def _holder(info: dict) -> str:
    pid = info.get("pid")
    return f"process {pid} ({info.get('command', 'kilonova')}, started {info.get('started', '?')})" if pid \
        else "another process"


def describe(state_dir: Path, info: dict) -> str:
    return (f"state directory {state_dir} is in use by {_holder(info)}; "
            f"`kilonova --state-dir {state_dir} stop` stops it")


class StateLock:
    """The exclusive lock of ``kilonova up`` on its state directory, and the file it publishes itself in; with
    ``service``, the lock of a service that owns files there (``Service.lock_name``)."""

    def __init__(self, state_dir: Path, command: str, service: str | None = None):
        self.path = Path(state_dir) / (LOCK_FILE if service is None else f"kilonova-{service.replace('/', '_')}.lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read(self.path)
            raise StateDirBusy(describe(state_dir, holder) if service is None else
                               f"state directory {state_dir}: {service} is already run by {_holder(holder)}") from None
        self._fd = fd
        self.info = {"pid": os.getpid(), "command": command, "state": "starting",
                     "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")}
        self._write()

    def publish(self, **values) -> None:
        self.info.update(values)
        self._write()

    def _write(self) -> None:
        data = json.dumps(self.info, indent=1).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def stop(state_dir: Path, timeout: float = 60.0) -> dict | None:
    """SIGTERM to the cloud running on ``state_dir``, then wait until it has let go of its lock.
    Returns what it had published (None: nothing ran); ``TimeoutError`` when it outlives ``timeout``."""
    info = running(state_dir)
    if info is None:
        return None
    pid = info.get("pid")
    if not pid:   # it is only starting: give it a moment to say who it is
        deadline = time.monotonic() + 5
        while info is not None and not info.get("pid") and time.monotonic() < deadline:
            time.sleep(0.05)
            info = running(state_dir)
        if info is None:
            return {}
        pid = info.get("pid")
        if not pid:
            raise TimeoutError(f"the process holding {state_dir} does not say which it is")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while running(state_dir) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still holds {state_dir} after {timeout:.0f} s")
        time.sleep(0.05)
    return info
