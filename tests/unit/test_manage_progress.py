"""Long `kilonova manage` commands draw a progress bar on a terminal, and write nothing more when captured."""
from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from kilonova.manage.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_on_a_terminal_and_closed_at_the_end():
    screen = Terminal()
    with Progress("auditing resource providers", 4, stream=screen) as progress:
        for _ in range(4):
            progress.advance()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "auditing resource providers: [" + "." * 30 + "] 0/4"
    assert frames[-1] == "auditing resource providers: [" + "#" * 30 + "] 4/4\n"


def test_nothing_is_written_when_the_output_is_captured_or_there_is_nothing_to_do():
    captured = io.StringIO()
    with Progress("auditing", 10, stream=captured) as progress:
        progress.advance(10)
    assert captured.getvalue() == ""
    empty = Terminal()
    with Progress("auditing", 0, stream=empty):
        pass
    assert empty.getvalue() == ""


def test_db_sync_shows_its_progress_on_a_terminal(tmp_path):
    """A real `kilonova manage db sync` with its stderr on a pseudo-terminal: one bar over the cell databases."""
    config = tmp_path / "kilonova.conf"
    config.write_text("[DEFAULT]\n")
    primary, secondary = pty.openpty()
    result = subprocess.run([sys.executable, "-m", "kilonova.cli", "--config", str(config), "--state-dir",
                             str(tmp_path / "state"), "manage", "db", "sync"], stderr=secondary,
                            stdout=subprocess.PIPE, timeout=120)
    os.close(secondary)
    seen = b""
    try:
        while chunk := os.read(primary, 4096):
            seen += chunk
    except OSError:  # the terminal closed
        pass
    os.close(primary)
    assert result.returncode == 0 and result.stdout == b""
    assert b"migrating cell databases: [" + b"#" * 30 + b"] 2/2" in seen, seen
