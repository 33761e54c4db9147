"""Image data that cannot hurt the host (CVE-2024-32498), checked the way Glance, Nova and Cinder do.

A disk image is a file format that QEMU interprets: a qcow2 can name a backing file or an external
``data-file`` anywhere on the host (``/etc/shadow``), a VMDK can name "flat" extents, and a file
labelled raw can hold a qcow2 header that a later probe would obey. So image data is never trusted:

* the image service inspects an upload as it streams in (``StreamInspector``) and refuses data whose
  content is not its ``disk_format`` or that fails the format's safety checks -- nothing is stored;
* whoever turns image data into a disk (a compute host's image cache, a volume made from an image)
  checks the file again (``check_file``): the same inspection, then ``qemu-img info`` run with the
  declared format (never probing) under memory and CPU limits, and no backing file or data file.

The inspection is OpenStack's own (``oslo_utils.imageutils.format_inspector``, what Nova and Glance
use): it parses headers in Python without running QEMU.
"""
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from oslo_utils.imageutils import format_inspector

LOG = logging.getLogger(__name__)

# What the content of each disk_format may be detected as. A raw disk with a partition table is
# detected as "gpt" (an MBR or GPT): still raw to QEMU. Formats absent here are not inspected: kernels
# and ramdisks (aki, ari) are not disk images, and no inspector knows ploop.
ACCEPTED_CONTENT = {
    "raw": {"raw", "gpt"}, "ami": {"raw", "gpt"}, "gpt": {"gpt"}, "iso": {"iso"}, "qcow2": {"qcow2"},
    "vmdk": {"vmdk"}, "vhd": {"vhd"}, "vhdx": {"vhdx"}, "vdi": {"vdi"},
}
# The format QEMU is told to open each disk_format as.
QEMU_FORMAT = {"ami": "raw", "iso": "raw", "gpt": "raw", "vhd": "vpc"}
# As Nova runs qemu-img on untrusted data: at most 1 GiB of address space and 30 s of CPU.
QEMU_IMG_LIMITS = ("--as=1073741824", "--cpu=30")


class UnsafeImage(Exception):
    """The data is not what its disk_format says, or is unsafe to hand to QEMU; the message says why."""


class FormatMismatch(UnsafeImage):
    """The data is another format than its disk_format (and passed its own format's safety checks)."""


def inspected(disk_format: str | None) -> bool:
    return disk_format in ACCEPTED_CONTENT


class _Feed:
    """The source InspectWrapper reads from: the chunk just received."""

    def __init__(self) -> None:
        self.chunk = b""

    def read(self, size: int) -> bytes:
        chunk, self.chunk = self.chunk, b""
        return chunk


class StreamInspector:
    """Inspects data chunk by chunk as it arrives; ``verdict()`` at the end names the format or raises."""

    def __init__(self, disk_format: str, require_match: bool = True) -> None:
        self.disk_format = disk_format
        self.require_match = require_match
        self._feed = _Feed()
        self._wrapper = format_inspector.InspectWrapper(self._feed)
        self._failed: Exception | None = None

    def feed(self, chunk: bytes) -> None:
        if self._failed is not None or not chunk:
            return
        self._feed.chunk = chunk
        try:
            self._wrapper.read(len(chunk))
        except Exception as exc:  # noqa: BLE001 - reported by verdict(), after the whole upload
            self._failed = exc

    def decided(self) -> bool:
        return self._failed is not None or self._wrapper.formats is not None

    def verdict(self) -> str:
        self._wrapper.close()
        if self._failed is not None:
            raise UnsafeImage(f"Image content could not be inspected: {self._failed}")
        return _judge(self._wrapper, self.disk_format, self.require_match)


def _judge(wrapper: format_inspector.InspectWrapper, disk_format: str, require_match: bool) -> str:
    matches = wrapper.formats or []  # the specific formats recognised, or [raw] when none was
    names = {str(match) for match in matches}
    accepted = ACCEPTED_CONTENT.get(disk_format, {disk_format})
    mismatch = not names & accepted
    if mismatch:
        detected = ", ".join(sorted(names)) or "unknown"
        message = f"Image content does not match disk_format {disk_format} (detected: {detected})"
        if require_match:
            raise FormatMismatch(message)
        LOG.warning("%s; kept ([image_format] require_image_format_match = false)", message)
    elif names - accepted - {"gpt"}:  # a second header hidden in the data (a partition table beside an ISO is normal)
        raise UnsafeImage(f"Image content matches several formats ({', '.join(sorted(names))}): refused")
    for match in matches:
        try:
            match.safety_check()
        except format_inspector.SafetyCheckFailed as exc:
            if str(match) == "gpt" and disk_format != "gpt":
                # A raw disk's partition table need not be valid for QEMU to use it safely (Glance's
                # gpt_safety_checks_nonfatal): noted, not refused.
                LOG.info("raw image data has a partition table that fails its checks: %s", exc)
                continue
            raise UnsafeImage(f"Image does not pass safety check: {exc}") from None
    return next((str(match) for match in matches if str(match) in accepted), str(matches[0]) if matches else "raw")


def inspect_file(path: Path, disk_format: str) -> str:
    """The format ``path`` holds, checked as an upload is (``UnsafeImage`` when refused)."""
    inspector = StreamInspector(disk_format)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            inspector.feed(chunk)
            if inspector.decided():
                break  # every format's parser has seen what it needs: the rest of the data cannot matter
    return inspector.verdict()


def qemu_img_info(path: Path, qemu_format: str) -> dict:
    """``qemu-img info`` of untrusted data: told its format (never probing) and under resource limits."""
    result = subprocess.run(["prlimit", *QEMU_IMG_LIMITS, "qemu-img", "info", "--output", "json",
                             "-f", qemu_format, str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise UnsafeImage(f"qemu-img could not read the image as {qemu_format}: "
                          f"{result.stderr.strip()[-300:] or 'killed at its resource limits'}")
    return json.loads(result.stdout)


def check_file(path: Path, disk_format: str | None) -> dict:
    """Before data becomes a disk: the inspection, then ``qemu-img info`` with the declared format, and no
    backing file or external data file. Returns the ``qemu-img info`` (``format`` is what QEMU opens)."""
    disk_format = disk_format or "raw"
    if inspected(disk_format):
        inspect_file(path, disk_format)
    qemu_format = QEMU_FORMAT.get(disk_format, disk_format)
    info = qemu_img_info(path, qemu_format)
    if info.get("format") != qemu_format:
        raise FormatMismatch(f"Image content does not match disk_format {disk_format}")
    if info.get("backing-filename"):
        raise UnsafeImage("Image has a backing file: refused")
    if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
        raise UnsafeImage("Image has an external data file: refused")
    return info
