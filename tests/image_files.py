"""Real image files for the hostile-image tests, made with qemu-img: what an attacker would upload (a qcow2
naming an external data file or a backing file, a VMDK whose data is a "flat" extent) and harmless ones."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kilonova.image import qcow2

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="needs qemu-img (apt-get install qemu-utils)")


def _create(*args: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", *args], check=True)


def make(directory: Path) -> Path:
    """target.raw, data-file.qcow2, backing.qcow2, flat.vmdk (+ its extent), sparse.vmdk, real.qcow2 and
    random.bin in ``directory``."""
    _create("-f", "raw", str(directory / "target.raw"), "1M")
    _create("-f", "qcow2", "-o", f"data_file={directory / 'target.raw'}", str(directory / "data-file.qcow2"), "1M")
    _create("-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", str(directory / "backing.qcow2"), "1M")
    _create("-f", "vmdk", "-o", "subformat=monolithicFlat", str(directory / "flat.vmdk"), "1M")
    _create("-f", "vmdk", str(directory / "sparse.vmdk"), "1M")
    (directory / "real.qcow2").write_bytes(qcow2.empty_image(64 << 20))
    (directory / "random.bin").write_bytes(os.urandom(100_000))
    return directory
