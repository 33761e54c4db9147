"""LVM thin volumes (``[volume] backend = lvm``): each volume a thin logical volume in the thin pool of
``[volume] volume_group``, as Cinder's LVM driver with ``lvm_type = thin`` makes them.

Names as Cinder's: the pool is ``<vg>-pool``, a volume ``volume-<id>``, a snapshot ``_snapshot-<id>`` (a thin
snapshot of the volume: no copy, and independent of its origin, which may be deleted before it). A volume
from a snapshot or from another volume is a thin snapshot of it too (writable, activated), grown to its size.
The volume group and its thin pool are the operator's (``vgcreate``, ``lvcreate --thinpool``); the service
only checks they are there. Scratch files (an image downloaded for a volume, a volume converted for an
upload, the NBD export records) stay in ``[volume] volumes_dir``.

A volume's data is its device, ``/dev/<vg>/volume-<id>``: what a host on this machine opens (libvirt gives
QEMU a block device) and what ``qemu-nbd`` serves to the others.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from kilonova.volume.backend import GIB, FileBackend, _qemu_img

TIMEOUT = 120


class LvmError(OSError):
    pass


def lvm(*args: str) -> str:
    """One LVM command; its stdout, or LvmError with its stderr (the reason an operator needs)."""
    try:
        result = subprocess.run(["lvm", *args], capture_output=True, text=True, timeout=TIMEOUT,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise LvmError("the LVM tools are not installed (lvm2)") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if "leaked on" not in line]
        raise LvmError(f"lvm {args[0]} failed: {' '.join(lines)[-400:] or f'exit status {result.returncode}'}")
    return result.stdout


class LvmThinBackend(FileBackend):
    def __init__(self, directory: str, volume_group: str):
        super().__init__(directory)
        self.vg = volume_group
        self.pool = f"{volume_group}-pool"

    def prepare(self) -> None:
        super().prepare()
        attrs = self._lv_field(self.pool, "lv_attr")
        if attrs is None:
            raise LvmError(f"volume group {self.vg!r} has no thin pool {self.pool!r} ([volume] backend = lvm): "
                           f"make it with lvcreate --type thin-pool -L SIZE -n {self.pool} {self.vg}")
        if not attrs.startswith("t"):
            raise LvmError(f"{self.vg}/{self.pool} is not a thin pool (its attributes are {attrs})")

    def _lv_field(self, name: str, field: str) -> str | None:
        """One field of ``<vg>/<name>`` (``lvs``), or None when there is no such logical volume."""
        try:
            out = lvm("lvs", "--noheadings", "--nosuffix", "--units", "b", "-o", field, f"{self.vg}/{name}")
        except LvmError as exc:
            if "not found" in str(exc) or "Failed to find" in str(exc):
                return None
            raise
        return out.strip()

    def path(self, volume_id: str) -> Path:
        return Path("/dev") / self.vg / f"volume-{volume_id}"

    def snapshot_path(self, snapshot_id: str) -> Path:
        return Path("/dev") / self.vg / f"_snapshot-{snapshot_id}"

    def create(self, volume_id: str, size_gb: int) -> None:
        lvm("lvcreate", "--yes", "--thin", "--virtualsize", f"{size_gb}g", "--name", f"volume-{volume_id}",
            f"{self.vg}/{self.pool}")

    def create_from(self, source: Path, volume_id: str, size_gb: int) -> None:
        """A thin snapshot of ``source`` (a snapshot's or a volume's logical volume), made writable and active
        (thin snapshots skip activation by default), grown to ``size_gb``."""
        name = f"volume-{volume_id}"
        lvm("lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--activate", "y", "--name", name,
            f"{self.vg}/{source.name}")
        try:
            current = int(self._lv_field(name, "lv_size") or 0)
            if current < size_gb * GIB:
                lvm("lvextend", "--size", f"{size_gb}g", f"{self.vg}/{name}")
        except OSError:
            self.delete(volume_id)
            raise

    def extend(self, volume_id: str, size_gb: int) -> None:
        lvm("lvextend", "--size", f"{size_gb}g", f"{self.vg}/volume-{volume_id}")

    def _remove(self, name: str) -> None:
        if self._lv_field(name, "lv_name") is not None:
            lvm("lvremove", "--yes", "--force", f"{self.vg}/{name}")

    def delete(self, volume_id: str) -> None:
        self._remove(f"volume-{volume_id}")
        self.image_path(volume_id).unlink(missing_ok=True)
        self.upload_path(volume_id).unlink(missing_ok=True)

    def size_gb(self, volume_id: str) -> int | None:
        size = self._lv_field(f"volume-{volume_id}", "lv_size")
        return None if size is None else int(size) // GIB

    def write_image(self, volume_id: str, size_gb: int, declared: str) -> None:
        """The downloaded image written raw onto a new thin volume (qemu-img onto its device: only the blocks
        the image has are allocated in the pool)."""
        image_format = self.image_format(volume_id, size_gb, declared)
        self.create(volume_id, size_gb)
        try:
            _qemu_img("convert", "-q", "-n", "-f", image_format, "-O", "raw", str(self.image_path(volume_id)),
                      str(self.path(volume_id)))
        except OSError:
            self.delete(volume_id)
            raise

    def capacity_gb(self) -> tuple[float, float]:
        """(total, free) GiB of the thin pool: its size, less what its volumes have written."""
        fields = (self._lv_field(self.pool, "lv_size,data_percent") or "0 0").split()
        size, used = int(fields[0]), float(fields[1]) if len(fields) > 1 else 0.0
        return size / GIB, size * (100.0 - used) / 100.0 / GIB

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        lvm("lvcreate", "--yes", "--snapshot", "--name", f"_snapshot-{snapshot_id}", f"{self.vg}/volume-{volume_id}")

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._remove(f"_snapshot-{snapshot_id}")
