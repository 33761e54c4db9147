"""The command line around the cloud: --version, bash completion, global options anywhere, scripts/up.sh."""
from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from kilonova.cli import hoist_global_options

ROOT = Path(__file__).resolve().parents[2]


def kilonova(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kilonova.cli", *args], capture_output=True, text=True, timeout=60)


def test_version():
    shown = kilonova("--version")
    assert (shown.returncode, shown.stdout) == (0, f"kilonova {version('kilonova')}\n")


def test_global_options_may_follow_the_subcommand():
    assert hoist_global_options(["up", "--state-dir", "X", "--hosts", "2", "--debug", "--config=k.conf"]) == \
        ["--state-dir", "X", "--debug", "--config=k.conf", "up", "--hosts", "2"]
    assert hoist_global_options(["manage", "cell_v2", "list_cells", "--", "--debug"]) == \
        ["manage", "cell_v2", "list_cells", "--", "--debug"]


@pytest.fixture(scope="module")
def completion(tmp_path_factory) -> Path:
    script = tmp_path_factory.mktemp("completion") / "kilonova.bash"
    script.write_text(kilonova("completion", "bash").stdout)
    return script


@pytest.mark.parametrize("words, expected, absent", [
    (["kilonova", ""], {"up", "serve", "status", "stop", "manage", "completion", "--version", "--state-dir"}, set()),
    (["kilonova", "--state-dir", "/tmp/x", "manage", "cell_v2", "li"], {"list_cells", "list_hosts"}, {"map_cell0"}),
    (["kilonova", "up", "--"], {"--hosts", "--base-port", "--clouds-yaml", "--state-dir", "--config"}, {"up"}),
    (["kilonova", "serve", "api", "co"], {"conductor", "compute"}, {"api"}),
])
def test_bash_completion_follows_the_command_tree(completion, words, expected, absent):
    quoted = " ".join(f"'{w}'" for w in words)
    shell = f"source {completion}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _kilonova; " \
            'printf "%s\\n" "${COMPREPLY[@]}"'
    offered = set(subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.split())
    assert expected <= offered and not absent & offered, offered


def _fake_checkout(tmp_path: Path, bootstrap_exit: int) -> Path:
    """scripts/up.sh beside a pyproject.toml, a bootstrap.sh that records its runs, and a .venv whose
    `kilonova` prints what it was started with."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "up.sh", tmp_path / "scripts" / "up.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "scripts" / "bootstrap.sh").write_text(f"#!/bin/sh\necho ran >> bootstrap.log\nexit {bootstrap_exit}\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "kilonova").write_text('#!/bin/sh\necho "kilonova $*"\n')
    for script in ("scripts/up.sh", "scripts/bootstrap.sh", ".venv/bin/kilonova"):
        (tmp_path / script).chmod(0o755)
    return tmp_path


def test_up_sh_installs_only_when_the_install_is_not_current(tmp_path):
    checkout = _fake_checkout(tmp_path, bootstrap_exit=0)

    def up() -> str:
        return subprocess.run([checkout / "scripts" / "up.sh", "--hosts", "2"], capture_output=True, text=True,
                              check=True).stdout

    assert up() == "kilonova up --hosts 2\n"
    assert up() == "kilonova up --hosts 2\n"
    assert (checkout / "bootstrap.log").read_text() == "ran\n"        # the second start installed nothing
    (checkout / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    up()
    assert (checkout / "bootstrap.log").read_text() == "ran\nran\n"   # a changed pyproject.toml reinstalls


def test_up_sh_starts_the_install_there_is_when_installing_fails(tmp_path):
    checkout = _fake_checkout(tmp_path, bootstrap_exit=1)     # offline: pip cannot reach the index
    started = subprocess.run([checkout / "scripts" / "up.sh"], capture_output=True, text=True)
    assert (started.returncode, started.stdout) == (0, "kilonova up\n")
    assert "could not update the install (offline?)" in started.stderr


def test_a_busy_port_is_named_with_its_service():
    import socket

    from kilonova.aio import _listen
    from kilonova.runtime import PortInUse

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as refused:
            _listen("127.0.0.1", port, "compute")
        assert str(refused.value) == f"port {port} on 127.0.0.1 for the compute API cannot be used: " \
                                     "Address already in use"
        with pytest.raises(PortInUse, match=r"for the /metrics port \(\[DEFAULT\] metrics_port\)"):
            _listen("127.0.0.1", port, "metrics")


async def test_api_connections_send_each_write_at_once():
    """A response goes out in two writes (head, body): with Nagle's algorithm on, the body waited for the
    client's delayed ACK, 40 ms on every request. asyncio turns it off only on sockets made for TCP."""
    import asyncio
    import socket

    from kilonova.aio import _listen

    listener = _listen("127.0.0.1", 0, "placement")
    accepted = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
