"""Logging of a Kilonova process: every line with its request ids, as text or JSON lines.

``[DEFAULT] log_format``: ``text`` (default) or ``json`` (one object a line). ``[DEFAULT] debug``: DEBUG
instead of INFO, as nova.conf's. ``[DEFAULT] log_file`` (relative to ``log_dir`` when both are set) or
``log_dir`` alone (one file per process, named after what it runs: ``kilonova-api.log``,
``kilonova-conductor-scheduler.log``, ``kilonova-up.log``); files are reopened when logrotate moves them.
Without a file, lines go to stderr: INFO for ``kilonova serve`` (a service under systemd or a container),
WARNING for ``kilonova up`` so that the all-in-one's terminal stays quiet (``debug`` shows everything); with a
file, ``kilonova up`` still shows its warnings and errors on stderr. What ``up`` and ``serve`` log before this
is set up (reading the configuration: its deprecation warnings) is held and then written here too
(``EarlyRecords``).

Each record gets ``request_id``, ``global_request_id``, ``user_id`` and ``project_id`` from
``kilonova.common.request_ids`` (a filter on the handlers, so libraries' records have them too).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path

from kilonova.common import request_ids

FORMATS = ("text", "json")
TEXT_FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
               "[%(global_request_id)s %(request_id)s %(user_id)s %(project_id)s] %(message)s")
# Libraries that would log every request or connection at INFO.
QUIET = ("httpx", "httpcore", "aio_pika", "aiormq", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy",
         "alembic", "websockify")


class RequestIdsFilter(logging.Filter):
    """Adds the ids of the work in hand to every record ('-' outside of any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = request_ids.current()
        if ids is None:
            record.request_id = record.global_request_id = record.user_id = record.project_id = "-"
        else:
            record.request_id = ids.request_id
            record.global_request_id = ids.global_request_id or "-"
            record.user_id = ids.user_id or "-"
            record.project_id = ids.project_id or "-"
        return True


class _TimeCache:
    """``formatTime`` that formats each second once (a busy API logs many lines a second)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(datefmt or "%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return self._text


class TextFormatter(_TimeCache, logging.Formatter):
    pass


class LogFile(logging.handlers.WatchedFileHandler):
    """A log file written in blocks: flushed at once for a WARNING or worse, else within FLUSH_SECONDS (a
    thread of its own), and checked for a logrotate move at most once a second, so that an access line
    costs a few microseconds rather than a write and a stat of its own."""

    FLUSH_SECONDS = 0.5

    def __init__(self, path: Path):
        super().__init__(path)
        self._checked = 0.0
        self._dirty = False
        self._flusher = threading.Thread(target=self._flush_regularly, name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            now = time.monotonic()
            if now - self._checked >= 1.0:
                self._checked = now
                self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.stream.flush()
            else:
                self._dirty = True
        except Exception:  # noqa: BLE001 - as logging's own handlers: never raise into the caller
            self.handleError(record)

    def _flush_regularly(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            if self._dirty:
                self._dirty = False
                self.flush()


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the request ids, and an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "process": record.process,
            "message": record.getMessage(),
        }
        for key in ("request_id", "global_request_id", "user_id", "project_id"):
            value = getattr(record, key, "-")
            entry[key] = None if value == "-" else value
        http = getattr(record, "http", None)
        if http is not None:
            entry["http"] = http
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class EarlyRecords(logging.handlers.MemoryHandler):
    """What a process logs before ``setup`` (the configuration's deprecation warnings: the file is read before
    its logging options can apply), held for the handlers ``setup`` makes, which write it in their format and
    file; written to stderr as before when none are made (a start refused, a bad configuration)."""

    def __init__(self) -> None:
        super().__init__(capacity=10_000, flushLevel=logging.CRITICAL + 1, target=logging.StreamHandler(sys.stderr))

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        super().setFormatter(fmt)
        self.target.setFormatter(fmt)   # logging.basicConfig's format, for stderr

    def take(self) -> list[logging.LogRecord]:
        with self.lock:
            held, self.buffer = self.buffer, []
        return held


def log_path(log_dir: str, log_file: str, process: str) -> Path | None:
    """Where this process logs (None: stderr)."""
    if log_file:
        path = Path(log_file).expanduser()
        return path if path.is_absolute() or not log_dir else Path(log_dir).expanduser() / path
    if log_dir:
        return Path(log_dir).expanduser() / f"{process}.log"
    return None


def setup(conf, process: str, *, interactive: bool, debug: bool = False) -> Path | None:
    """Configure the root logger for this process; returns the log file (None: stderr).

    ``interactive``: the all-in-one in a terminal (stderr at WARNING unless debugging).
    """
    from kilonova.config import ConfigError

    fmt = conf.get("DEFAULT", "log_format").strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"[DEFAULT] log_format = {fmt!r}: choose one of {', '.join(FORMATS)}")
    debug = debug or conf.getbool("DEFAULT", "debug")
    path = log_path(conf.get("DEFAULT", "log_dir"), conf.get("DEFAULT", "log_file"), process)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = LogFile(path)
        level = logging.DEBUG if debug else logging.INFO
    else:
        handler = logging.StreamHandler(sys.stderr)
        level = logging.DEBUG if debug else (logging.WARNING if interactive else logging.INFO)
    handlers = [handler]
    if path is not None and interactive:
        # The all-in-one's terminal still shows what went wrong when everything else goes to the file.
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setLevel(logging.WARNING)
        handlers.append(terminal)
    for each in handlers:
        each.addFilter(RequestIdsFilter())
        each.setFormatter(JSONFormatter() if fmt == "json"
                          else TextFormatter(TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    # Neither is in any format; each costs a lookup per record.
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    early: list[logging.LogRecord] = []
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, EarlyRecords):
            early += old.take()
        old.close()
    for each in handlers:
        root.addHandler(each)
    # The root's level is the handler's: a record nobody writes is never made (access lines cost nothing
    # in a quiet all-in-one).
    root.setLevel(level)
    for record in early:
        if record.levelno >= level:
            root.handle(record)
    for name in QUIET:
        # With debug, the HTTP and AMQP libraries may speak; SQLAlchemy's INFO is every statement.
        logging.getLogger(name).setLevel(logging.NOTSET if debug and not name.startswith(("sqlalchemy", "alembic"))
                                         else logging.WARNING)
    return path
