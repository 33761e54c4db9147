"""Run the real ``openstack``, ``nova`` and ``cinder`` CLIs, and the ``kilonova`` processes of the test clouds,
without paying their start-up every time.

Importing python-openstackclient and its plugins costs about a second of CPU, and the tests run the CLI
hundreds of times; importing Kilonova's services costs as much again, and the tests start a few hundred
``kilonova up`` and ``kilonova serve`` processes. A *warm* process of each kind (one per test process, started
on first use) imports them once, plugins, command and service modules included, and waits on a Unix socket.
For each command it forks: the child is a new process (a session of its own) that runs the program's own
``main`` with the command's arguments, environment and working directory, its standard output and error on
files the caller passed, stdin on /dev/null, exactly as ``subprocess.Popen`` of the console script (or of
``python -m kilonova.cli``) would; the warm process reports the child's pid at once and its exit status
(a negative signal number if a signal ended it, as ``subprocess`` says) when it ends. Nothing runs in a warm
process but imports, so no state passes from one command to the next.
``KILONOVA_TEST_FORKED_CLI=0`` runs the CLIs and the clouds as plain subprocesses instead.

Run as a script, this module is a warm process: ``python forked_cli.py SOCKET cli|kilonova``.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLIENT_POLL_DIR = Path(__file__).parent / "client_poll"
ENABLED = os.environ.get("KILONOVA_TEST_FORKED_CLI", "1") != "0"
KILONOVA = "kilonova"  # the program name of ``python -m kilonova.cli`` (its own warm process)


def client_env() -> dict[str, str]:
    """The environment for a real OpenStack CLI: this one without OS_* variables, fast status polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_POLL_DIR), env.get("PYTHONPATH")]))
    return env


# -- the caller's side ------------------------------------------------------------------------------------------

class _WarmProcess:
    def __init__(self, kind: str) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"kilonova-{kind}-")
        self.socket_path = os.path.join(self.dir, "cli.sock")
        log = os.path.join(self.dir, "warm.log")
        # The CLIs' warm process has their environment; Kilonova's has this one, as `python -m kilonova.cli`
        # would (one BLAS thread: no thread but the main one runs in a process that forks).
        env = client_env() if kind == "cli" else dict(os.environ, OPENBLAS_NUM_THREADS="1")
        # stdin is a pipe it watches: when this process ends, however it ends, the warm process ends too.
        with open(log, "wb") as errors:
            self.proc = subprocess.Popen([sys.executable, __file__, self.socket_path, kind], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(log, errors="replace") as errors:
                    raise RuntimeError(f"the warm {kind} process did not start: {errors.read()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        _remove(self.dir)


_warm: dict[str, _WarmProcess] = {}
_warm_lock = threading.Lock()


def _warm_process(kind: str) -> _WarmProcess:
    with _warm_lock:
        warm = _warm.get(kind)
        if warm is None or warm.proc.poll() is not None:
            warm = _warm[kind] = _WarmProcess(kind)
            atexit.register(warm.stop)
        return warm


class ForkedProcess:
    """A child of a warm process, as much like ``subprocess.Popen`` as the tests use it: ``pid``, ``poll``,
    ``wait``, ``send_signal``, ``terminate``, ``kill``, ``returncode`` (and ``stdout`` where the caller sets it)."""

    def __init__(self, args: list[str], conn: socket.socket) -> None:
        self.args = args
        self._conn = conn
        self._buffer = b""
        self.pid = int(self._line(None))
        self.returncode: int | None = None
        self.stdout = None

    def _line(self, timeout: float | None) -> bytes | None:
        """The next line the warm process sends (b"" if it closed the connection), None after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                return None
            chunk = self._conn.recv(4096)
            if not chunk:
                return b""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line + b"\n"

    def poll(self) -> int | None:
        return self.wait(0) if self.returncode is None and select.select([self._conn], [], [], 0)[0] \
            else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            # No status: the warm process ended before its child did (its caller is gone).
            self.returncode = int(line) if line.strip() else -signal.SIGKILL
            self._conn.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def spawn(program: str, args: list[str], env: dict[str, str], stdout: int, stderr: int) -> ForkedProcess:
    """Start ``program`` (the venv's ``openstack``, ``nova`` or ``cinder`` script, or ``kilonova`` for
    ``python -m kilonova.cli``) with ``args`` in a child of its warm process, its output on the open file
    descriptors ``stdout`` and ``stderr``; returns at once."""
    kind = "kilonova" if program == KILONOVA else "cli"
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(_warm_process(kind).socket_path)
        request = json.dumps({"program": program, "args": args, "env": env, "cwd": os.getcwd()}).encode()
        socket.send_fds(conn, [request + b"\n"], [stdout, stderr])
        return ForkedProcess([program, *args], conn)
    except BaseException:
        conn.close()
        raise


def run(program: str, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([program, *args], env=env, capture_output=True, text=True, timeout=timeout)`` of the
    venv's ``openstack``, ``nova`` or ``cinder`` script, run by a child of the warm process."""
    cmd = [str(Path(sys.executable).parent / program), *args]
    if not ENABLED:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = spawn(program, args, env, out.fileno(), err.fileno())
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            out.seek(0)
            err.seek(0)
            raise subprocess.TimeoutExpired(cmd, timeout, out.read(), err.read()) from None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, code, out.read().decode(), err.read().decode())


def kilonova(args: list[str], stdout: int, stderr: int, env: dict[str, str] | None = None):
    """``subprocess.Popen([sys.executable, "-m", "kilonova.cli", *args], stdout=stdout, stderr=stderr,
    stdin=DEVNULL, start_new_session=True)``, forked from the warm Kilonova process (a plain Popen with
    ``KILONOVA_TEST_FORKED_CLI=0``); ``stdout`` and ``stderr`` are open file descriptors."""
    env = dict(os.environ) if env is None else env
    if not ENABLED:
        return subprocess.Popen([sys.executable, "-m", "kilonova.cli", *args], stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return spawn(KILONOVA, args, env, stdout, stderr)


# -- the warm process -------------------------------------------------------------------------------------------

def _preload_clis() -> dict:
    """Import the CLIs, every plugin and command module they load, and what cliff works out per run: for
    each, its console script's ``main`` (each reads its arguments from ``sys.argv``)."""
    from importlib.metadata import entry_points

    import cliff.command
    import novaclient.shell
    import openstackclient.shell

    groups = entry_points()
    for group in groups.groups:
        if group.startswith("openstack."):
            for entry in groups.select(group=group):
                try:
                    entry.load()
                except Exception:  # the CLI itself reports a broken plugin when it loads it
                    pass
    import novaclient.v2.shell  # noqa: F401
    cliff.command._get_distributions_by_modules()  # the package of each command module (its help epilog)
    mains = {"openstack": lambda: openstackclient.shell.main(sys.argv[1:]),
             "nova": lambda: novaclient.shell.main(sys.argv[1:])}  # its default argv is the one at import
    with contextlib.suppress(ImportError):  # without it, `cinder` runs as its console script (if installed)
        import logging

        before = list(logging.root.handlers)
        import cinderclient.shell
        import cinderclient.v3.shell  # noqa: F401
        # Its import calls logging.basicConfig(): the `cinder` command's root handler, not the others'.
        added = [handler for handler in logging.root.handlers if handler not in before]
        for handler in added:
            logging.root.removeHandler(handler)

        def cinder():
            for handler in added:
                logging.root.addHandler(handler)
            return cinderclient.shell.main()
        mains["cinder"] = cinder
    return mains


# Imported by a running cloud only when it needs them (migrations, database drivers, the servers' protocols).
_KILONOVA_LAZY = ("alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.operations",
                  "alembic.script", "mako.template", "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql",
                  "sqlalchemy.dialects.mysql", "psycopg", "pymysql", "aio_pika", "uvicorn.protocols.http.h11_impl",
                  "uvicorn.protocols.websockets.websockets_impl", "uvicorn.lifespan.off", "websockify")


def _preload_kilonova() -> dict:
    """Import every module of Kilonova (each imports cleanly and starts nothing) and what its services import
    when they start: ``python -m kilonova.cli``'s ``main``."""
    import importlib
    import pkgutil

    import kilonova
    import kilonova.cli

    for module in [m.name for m in pkgutil.walk_packages(kilonova.__path__, "kilonova.")] + list(_KILONOVA_LAZY):
        with contextlib.suppress(Exception):  # the command reports it when it needs the module
            importlib.import_module(module)
    return {KILONOVA: lambda: kilonova.cli.main(sys.argv[1:])}


def _child(conn: socket.socket, mains: dict, request: dict, fds: list[int]) -> None:
    """In the forked child: become the command, run it, exit as the interpreter would (its threads joined, its
    exit functions run, its output flushed); the warm process reports the status."""
    code = 1
    try:
        os.setsid()  # a process group of its own: a timeout kills the command and anything it started
        conn.sendall(f"{os.getpid()}\n".encode())
        conn.close()
        stdin = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((stdin, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(fd, target)
        for fd in {stdin, *fds}:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        program = request["program"]
        if program == KILONOVA:  # as `python -m kilonova.cli` sets it
            import kilonova.cli
            sys.argv = [kilonova.cli.__file__, *request["args"]]
        else:
            sys.argv = [str(Path(sys.executable).parent / program), *request["args"]]
        try:
            # a program not preloaded: its console script, on the same files
            code = mains[program]() if program in mains else subprocess.call(sys.argv)
        except SystemExit as exc:  # as the interpreter maps sys.exit's argument to a status
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        code = code or 0
        with contextlib.suppress(Exception):
            threading._shutdown()  # the interpreter waits for its non-daemon threads before the exit functions
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF if code >= 0 else 1)


def _remove(directory: str) -> None:
    """The socket directory and what is in it (the warm process removes it too when its caller is gone)."""
    for name in ("cli.sock", "warm.log"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def serve(socket_path: str, kind: str) -> None:
    if kind == "cli":
        # As the console script: its own directory first on sys.path, not this one, and its name in sys.argv
        # (cliff reads the program's name from it on import).
        sys.path[0] = str(Path(sys.executable).parent)
        sys.argv = [str(Path(sys.executable).parent / "openstack")]
        mains = _preload_clis()
    else:
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        mains = _preload_kilonova()
    import gc

    gc.collect()
    gc.freeze()  # what the imports made stays out of the children's collections (and their pages shared)
    # Each child's status goes back on its request's connection once it ends: SIGCHLD wakes the loop.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting: dict[int, socket.socket] = {}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".tmp")
    listener.listen(64)
    os.rename(socket_path + ".tmp", socket_path)  # there once it accepts
    while True:
        ready, _, _ = select.select([listener, sys.stdin, wake_r], [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 4096)
        _report_ended(waiting)
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            # The test process is gone (an xdist worker ends without running atexit, a killed one without its
            # fixtures' teardown): so are the clouds and commands it started, as the stop it missed would do.
            for pid in waiting:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGTERM)
            _remove(os.path.dirname(socket_path))
            return
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
        while not message.endswith(b"\n"):
            more = conn.recv(1 << 16)
            if not more:
                break
            message += more
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_r, wake_w):
                os.close(fd)
            listener.close()
            for other in waiting.values():
                other.close()
            _child(conn, mains, request, fds)
        for fd in fds:
            os.close(fd)
        waiting[pid] = conn


def _report_ended(waiting: dict[int, socket.socket]) -> None:
    """Send each child that ended its exit status (as ``subprocess`` reports it) and forget it."""
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        conn = waiting.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError), conn:
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cli")
