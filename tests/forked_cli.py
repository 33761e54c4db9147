"""Run the real ``openstack``, ``nova`` and ``cinder`` CLIs without paying their start-up every time.

Importing python-openstackclient and its plugins costs about a second of CPU, and the tests run the CLI
hundreds of times. A *warm* process (one per test process, started on first use) imports the CLIs once,
plugins and command modules included, and waits on a Unix socket. For each command it forks: the child
is a new process that runs the CLI's own ``main`` with the command's arguments, environment and working
directory, its standard output and error on files the caller passed, stdin on /dev/null, exactly as
``subprocess.run(..., capture_output=True)`` of the console script would, and it reports its exit status.
Nothing runs in the warm process but imports, so no state passes from one command to the next.
``KILONOVA_TEST_FORKED_CLI=0`` runs the console scripts as plain subprocesses instead.

Run as a script, this module is the warm process: ``python forked_cli.py SOCKET``.
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


def client_env() -> dict[str, str]:
    """The environment for a real OpenStack CLI: this one without OS_* variables, fast status polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_POLL_DIR), env.get("PYTHONPATH")]))
    return env


# -- the caller's side ------------------------------------------------------------------------------------------

class _WarmProcess:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kilonova-cli-")
        self.socket_path = os.path.join(self.dir, "cli.sock")
        log = os.path.join(self.dir, "warm.log")
        # stdin is a pipe it watches: when this process ends, however it ends, the warm process ends too.
        with open(log, "wb") as errors:
            self.proc = subprocess.Popen([sys.executable, __file__, self.socket_path], env=client_env(),
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(log, errors="replace") as errors:
                    raise RuntimeError(f"the warm CLI process did not start: {errors.read()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        _remove(self.dir)


_warm: _WarmProcess | None = None
_warm_lock = threading.Lock()


def _warm_process() -> _WarmProcess:
    global _warm
    with _warm_lock:
        if _warm is None or _warm.proc.poll() is not None:
            _warm = _WarmProcess()
            atexit.register(_warm.stop)
        return _warm


def run(program: str, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([program, *args], env=env, capture_output=True, text=True, timeout=timeout)`` of the
    venv's ``openstack``, ``nova`` or ``cinder`` script, run by a child of the warm process."""
    cmd = [str(Path(sys.executable).parent / program), *args]
    if not ENABLED:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    warm = _warm_process()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(warm.socket_path)
        request = json.dumps({"program": program, "args": args, "env": env, "cwd": os.getcwd()}).encode()
        socket.send_fds(conn, [request + b"\n"], [out.fileno(), err.fileno()])
        reader = conn.makefile("rb")
        conn.settimeout(timeout)
        pid = 0
        try:
            pid = int(reader.readline())
            line = reader.readline()
        except (TimeoutError, ValueError) as exc:
            if pid:
                os.killpg(pid, signal.SIGKILL)
            out.seek(0)
            err.seek(0)
            if isinstance(exc, TimeoutError):
                raise subprocess.TimeoutExpired(cmd, timeout, out.read(), err.read()) from None
            raise
        # A child killed by a signal reports nothing: as subprocess says of it, a negative status.
        code = int(line) if line.strip() else -signal.SIGKILL
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, code, out.read().decode(), err.read().decode())


# -- the warm process -------------------------------------------------------------------------------------------

def _preload() -> dict:
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


def _child(conn: socket.socket, mains: dict, request: dict, fds: list[int]) -> None:
    """In the forked child: become the command, run it, report its status, exit."""
    code = 1
    try:
        os.setsid()  # a process group of its own: a timeout kills the command and anything it started
        conn.sendall(f"{os.getpid()}\n".encode())
        stdin = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((stdin, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [str(Path(sys.executable).parent / request["program"]), *request["args"]]
        try:
            # a program not preloaded: its console script, on the same files
            code = mains[request["program"]]() if request["program"] in mains else subprocess.call(sys.argv)
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
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        try:
            conn.sendall(f"{code}\n".encode())
        finally:
            os._exit(code & 0xFF if code >= 0 else 1)


def _remove(directory: str) -> None:
    """The socket directory and what is in it (the warm process removes it too when its caller is gone)."""
    for name in ("cli.sock", "warm.log"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def _reap() -> None:
    """Collect the children that ended (their CPU time then counts as this process's children's, as the
    CLIs' would count in the test process's)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def serve(socket_path: str) -> None:
    # As the console script: its own directory first on sys.path, not this one, and its name in sys.argv
    # (cliff reads the program's name from it on import).
    sys.path[0] = str(Path(sys.executable).parent)
    sys.argv = [str(Path(sys.executable).parent / "openstack")]
    mains = _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".tmp")
    listener.listen(64)
    os.rename(socket_path + ".tmp", socket_path)  # there once it accepts
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        _reap()
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            _remove(os.path.dirname(socket_path))
            return  # the test process is gone (an xdist worker ends without running atexit)
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
            while not message.endswith(b"\n"):
                more = conn.recv(1 << 16)
                if not more:
                    break
                message += more
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                _child(conn, mains, request, fds)
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    serve(sys.argv[1])
