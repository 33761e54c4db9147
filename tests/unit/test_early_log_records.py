"""What a process logs before its logging is set up from the configuration (the configuration's own
deprecation warnings, kilonova/config/__init__.py) reaches the log it sets up, in its format
(kilonova/common/logs.py ``EarlyRecords``); stderr, as before, when the start stops first. Real processes."""
from __future__ import annotations

import json
import subprocess
import sys

from kilonova.runtime import StateLock
from tests.cloud import free_port_block

DEPRECATED = "[filter_scheduler] max_placement_results is deprecated: set [scheduler] max_placement_results instead"


def test_deprecation_warnings_reach_the_log_file_in_its_format(tmp_path):
    port = free_port_block(1)
    config = tmp_path / "kilonova.conf"
    config.write_text(f"[DEFAULT]\nlog_dir = {tmp_path / 'logs'}\nlog_format = json\n[ports]\nplacement = {port}\n"
                      "[filter_scheduler]\nmax_placement_results = 5\n")
    process = subprocess.Popen([sys.executable, "-m", "kilonova.cli", "--config", str(config), "--state-dir",
                                str(tmp_path / "state"), "serve", "placement"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "Kilonova is serving placement" in process.stdout.readline()
        # A WARNING is written to the file at once (logs.LogFile), long before the process says it serves.
        entries = [json.loads(line) for line in (tmp_path / "logs" / "kilonova-placement.log").read_text().splitlines()]
        warned = [entry for entry in entries if entry["message"] == DEPRECATED]
        assert len(warned) == 1 and warned[0]["level"] == "WARNING" and warned[0]["logger"] == "kilonova.config"
        assert "request_id" in warned[0]
        assert entries.index(warned[0]) == 0   # logged first, as it happened
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "deprecated" not in stderr, stderr


def test_a_start_stopped_before_its_logging_is_set_up_still_warns_on_stderr_first(tmp_path):
    """Refused before it sets up its logging (another process runs the volume service on the state directory):
    the warning on stderr as before, then the one line that says why it stopped."""
    config = tmp_path / "kilonova.conf"
    config.write_text(f"[DEFAULT]\nlog_dir = {tmp_path / 'logs'}\n[filter_scheduler]\nmax_placement_results = 5\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    holder = StateLock(state_dir, "kilonova serve volume", "volume")
    try:
        stopped = subprocess.run([sys.executable, "-m", "kilonova.cli", "--config", str(config), "--state-dir",
                                  str(state_dir), "serve", "volume"], capture_output=True, text=True, timeout=60)
    finally:
        holder.release()
    assert stopped.returncode == 1
    lines = stopped.stderr.splitlines()
    assert len(lines) == 2 and lines[0].endswith(f" WARNING kilonova.config: {DEPRECATED}"), stopped.stderr
    assert lines[1].startswith(f"kilonova: state directory {state_dir}: volume is already run by process ")
    assert not (tmp_path / "logs").exists()
