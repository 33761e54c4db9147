"""qcow2 file-backed volumes (kilonova/volume/qcow2_chain.py through FileBackend) with the real qemu-img:
snapshots are overlays (the snapshot's data frozen in the overlay's backing file), volumes from snapshots
hold that data, offline deletes commit a snapshot away keeping what later snapshots and the volume hold, and
the merges asked of a compute host for an open volume are Cinder's (pull into the active file, or commit)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from kilonova.volume.backend import GIB, FileBackend

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img is not installed")


def _read(path, fmt: str, offset: int = 0) -> bytes:
    out = path.with_name("read.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(out)], check=True,
                   capture_output=True)
    with open(out, "rb") as fh:
        fh.seek(offset)
        data = fh.read(16)
    out.unlink()
    return data


def _note(path, offset: int, text: bytes) -> None:
    """Write ``text`` at ``offset`` into the qcow2 image's data (what a guest would do)."""
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {text[0]} {offset} 512", str(path)], check=True,
                   capture_output=True)


def test_snapshots_are_overlays_and_deleting_them_keeps_every_later_point(tmp_path):
    if not shutil.which("qemu-io"):
        pytest.skip("qemu-io is not installed")
    backend = FileBackend(str(tmp_path), "qcow2")
    backend.prepare()
    backend.create("v1", 1)
    assert backend.format_of("v1") == "qcow2" and backend.size_gb("v1") == 1
    _note(backend.path("v1"), 0, b"A")
    backend.snapshot("v1", "s1")
    assert backend.path("v1").name == "volume-v1.s1" and os.readlink(backend.snapshot_path("s1")) == "volume-v1.s1"
    _note(backend.path("v1"), 0, b"B")
    backend.snapshot("v1", "s2")
    _note(backend.path("v1"), 0, b"C")

    # Copies from each snapshot hold its point (raw here: a backend may change its format for new volumes).
    raw = FileBackend(str(tmp_path))
    raw.create_from(backend.snapshot_path("s1"), "c1", 2)
    raw.create_from(backend.snapshot_path("s2"), "c2", 1)
    raw.create_from(backend.path("v1"), "c3", 1)
    assert [_read(raw.path(c), "raw")[:1] for c in ("c1", "c2", "c3")] == [b"A", b"B", b"C"]
    assert raw.size_gb("c1") == 2

    # s1 deleted offline: committed into the base; s2 and the volume keep theirs.
    backend.delete_snapshot("s1")
    assert not backend.snapshot_path("s1").is_symlink() and not (tmp_path / "volume-v1.s1").exists()
    assert backend.chains.info("v1") == {"active": "volume-v1.s2", "s2": "volume-v1.s2"}
    backend.create_from(backend.snapshot_path("s2"), "c4", 1)
    assert _read(backend.path("c4"), "qcow2")[:1] == b"B"
    assert _read(backend.path("v1"), "qcow2")[:1] == b"C"
    # s2, whose overlay is the active file: committed too, its base the active file again.
    backend.delete_snapshot("s2")
    assert backend.chains.info("v1") == {"active": "volume-v1"} and _read(backend.path("v1"), "qcow2")[:1] \
        == b"C"
    backend.extend("v1", 2)
    assert backend.size_gb("v1") == 2
    backend.delete("v1")
    assert not list(tmp_path.glob("volume-v1*"))


def test_the_merges_asked_of_a_host_are_cinders(tmp_path):
    backend = FileBackend(str(tmp_path), "qcow2")
    backend.create("v1", 1)
    backend.snapshot("v1", "s1")
    backend.snapshot("v1", "s2")
    # s1's overlay is not the active file: committed into the base, then gone.
    info, stale, after = backend.chains.plan_online_delete("v1", "s1")
    assert info == {"type": "qcow2", "volume_id": "v1", "file_to_merge": "volume-v1.s1",
                    "merge_target_file": "volume-v1"}
    assert stale.name == "volume-v1.s1" and after == {"active": "volume-v1.s2", "s2": "volume-v1.s2"}
    # s2's is: the active file pulls s2's data (everything above the base); s1 then names the active file.
    info, stale, after = backend.chains.plan_online_delete("v1", "s2")
    assert info == {"type": "qcow2", "volume_id": "v1", "file_to_merge": "volume-v1", "merge_target_file": None}
    assert stale.name == "volume-v1.s1" and after == {"active": "volume-v1.s2", "s1": "volume-v1.s2"}
    backend.chains.online_deleted("v1", "s2", stale, after)
    assert os.readlink(backend.snapshot_path("s1")) == "volume-v1.s2" and not backend.snapshot_path("s2").exists()


def test_a_qcow2_volume_is_told_to_hosts_as_qcow2_and_raw_ones_stay_raw(tmp_path):
    from kilonova.volume import connections
    backend = FileBackend(str(tmp_path), "qcow2")
    backend.create("q", 1)
    info = connections.local_info(backend.path("q"), "q", None, "rw", backend.format_of("q"))
    assert info["data"]["format"] == "qcow2" and info["data"]["device_path"].endswith("volume-q")
    raw = FileBackend(str(tmp_path))
    raw.create("r", 1)
    assert raw.format_of("r") == "raw" and os.path.getsize(raw.path("r")) == GIB
    with pytest.raises(ValueError):
        FileBackend(str(tmp_path), "vmdk")
