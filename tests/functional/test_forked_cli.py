"""The CLIs forked from the warm process (tests/forked_cli.py) answer as their console scripts do: the same exit
status, standard output and standard error, byte for byte, for a listing, an error and a usage error each."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import forked_cli

COMMANDS = [
    ("openstack", ["flavor", "list", "-f", "json"]),
    ("openstack", ["server", "show", "no-such-server"]),
    ("openstack", ["server", "list", "--no-such-option"]),
    ("nova", ["flavor-list"]),
    ("nova", ["show", "no-such-server"]),
    ("cinder", ["type-list"]),
    ("cinder", ["show", "no-such-volume"]),
]


@pytest.mark.parametrize(("program", "args"), COMMANDS, ids=[f"{p}-{'-'.join(a[:2])}" for p, a in COMMANDS])
def test_a_forked_command_answers_as_its_console_script(cloud, program, args):
    env = cloud.env() if program == "openstack" else cloud._legacy_env("kilonova")
    script = Path(sys.executable).parent / program
    if not script.exists():
        pytest.skip(f"{program} is not installed")
    real = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    forked = forked_cli.run(program, args, env, 120)
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)
