"""File-backed volumes: one sparse raw file per volume in ``[volume] volumes_dir``, or with ``[volume]
volume_format = qcow2`` a chain of qcow2 files per volume (qcow2_chain.py: snapshots are overlays, as Cinder's
file-based drivers make them, and those of a volume a guest has open are taken with the compute service's
help). A volume keeps the format it was made with; each is opened as its format, never probed.

A raw file is what QEMU attaches with no format probing and what ``qemu-nbd`` or an iSCSI target can
serve later; sparse, so a 1 GiB volume costs only the blocks a guest writes.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kilonova.common import image_safety
from kilonova.volume.images import ImageError
from kilonova.volume.qcow2_chain import Chains

GIB = 1024 ** 3


class FileBackend:
    def __init__(self, directory: str, volume_format: str = "raw"):
        self.directory = Path(directory)
        if volume_format not in ("raw", "qcow2"):
            raise ValueError(f"[volume] volume_format: {volume_format!r} is not raw or qcow2")
        self.volume_format = volume_format
        self.chains = Chains(self.directory)

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, volume_id: str) -> Path:
        """The volume's data as a host opens it: its file (a qcow2 volume's active file)."""
        if self.chains.has(volume_id):
            return self.chains.active(volume_id)
        return self.directory / f"volume-{volume_id}"

    def format_of(self, volume_id: str) -> str:
        return "qcow2" if self.chains.has(volume_id) else "raw"

    def _source(self, source: Path) -> tuple[Path, str]:
        """(file, format) of a snapshot's or a volume's data: a qcow2 snapshot's symlink stands for its
        overlay, whose backing file holds the snapshot's data; a qcow2 volume's active file reads through its
        chain."""
        if source.is_symlink():
            return self.chains.snapshot_data(source.name[len("snapshot-"):]), "qcow2"
        volume_id = source.name[len("volume-"):].split(".", 1)[0]
        return source, ("qcow2" if source.name.startswith("volume-") and self.chains.has(volume_id) else "raw")

    def create(self, volume_id: str, size_gb: int) -> None:
        if self.volume_format == "qcow2":
            self.chains.create(volume_id, size_gb)
            return
        fd = os.open(self.path(volume_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size_gb * GIB)
        except OSError:
            os.close(fd)
            self.delete(volume_id)
            raise
        os.close(fd)

    def create_from(self, source: Path, volume_id: str, size_gb: int) -> None:
        """A new volume holding a copy of ``source`` (a snapshot's or another volume's file), grown to
        ``size_gb``."""
        data, data_format = self._source(source)
        if data_format == "raw" and self.volume_format == "raw":
            _sparse_copy(data, self.path(volume_id))
            os.truncate(self.path(volume_id), size_gb * GIB)
            return
        self._convert_into(data, data_format, volume_id, size_gb)

    def _convert_into(self, data: Path, data_format: str, volume_id: str, size_gb: int) -> None:
        """A new volume of ``size_gb`` in this backend's format, converted from ``data``."""
        target = self.directory / f"volume-{volume_id}"
        partial = target.with_name(target.name + ".part")
        try:
            _qemu_img("convert", "-q", "-f", data_format, "-O", self.volume_format, str(data), str(partial))
            if self.volume_format == "qcow2":
                _qemu_img("resize", "-q", "-f", "qcow2", str(partial), str(size_gb * GIB))
                self.chains.adopt(volume_id, partial)
            else:
                os.truncate(partial, size_gb * GIB)
                os.chmod(partial, 0o600)
                partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)

    def extend(self, volume_id: str, size_gb: int) -> None:
        if self.chains.has(volume_id):
            self.chains.extend(volume_id, size_gb)
            return
        path = self.path(volume_id)
        if path.stat().st_size > size_gb * GIB:
            raise OSError(f"{path} is larger than {size_gb} GiB")
        os.truncate(path, size_gb * GIB)

    def delete(self, volume_id: str) -> None:
        self.chains.delete(volume_id)
        self.path(volume_id).unlink(missing_ok=True)
        self.image_path(volume_id).unlink(missing_ok=True)
        self.upload_path(volume_id).unlink(missing_ok=True)

    def size_gb(self, volume_id: str) -> int | None:
        """The allocated size, or None when the volume has no file."""
        if self.chains.has(volume_id):
            return self.chains.size_gb(volume_id)
        try:
            return self.path(volume_id).stat().st_size // GIB
        except FileNotFoundError:
            return None

    def image_path(self, volume_id: str) -> Path:
        """Where an image's data is downloaded before it is written into the volume."""
        return self.directory / f"image-for-{volume_id}"

    def image_format(self, volume_id: str, size_gb: int, declared: str) -> str:
        """The format of the image downloaded for a volume of ``size_gb``; an image that fails the safety
        checks, of another format than declared, or bigger than the volume is refused."""
        try:  # never probed, never a backing or data file (kilonova/common/image_safety.py)
            info = image_safety.check_file(self.image_path(volume_id), declared)
        except image_safety.UnsafeImage as exc:
            raise ImageError(f"Image for volume {volume_id} is unacceptable: {exc}") from None
        virtual_gb = -(-int(info["virtual-size"]) // GIB)
        if virtual_gb > size_gb:
            raise ImageError(f"Image virtual size is {virtual_gb}GB and doesn't fit in a volume of size "
                             f"{size_gb}GB.")
        return info["format"]

    def write_image(self, volume_id: str, size_gb: int, declared: str) -> None:
        """The downloaded image, whatever its format, written raw into a new volume of ``size_gb``
        (``image_format`` checks it first)."""
        source, target = self.image_path(volume_id), self.path(volume_id)
        info = {"format": self.image_format(volume_id, size_gb, declared)}
        if self.volume_format == "qcow2":
            self._convert_into(source, info["format"], volume_id, size_gb)
            return
        partial = target.with_name(target.name + ".part")
        try:
            _qemu_img("convert", "-q", "-f", info["format"], "-O", "raw", str(source), str(partial))
            os.truncate(partial, size_gb * GIB)
            os.chmod(partial, 0o600)
            partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)

    def upload_path(self, volume_id: str) -> Path:
        return self.directory / f"upload-of-{volume_id}"

    def export_image(self, volume_id: str, disk_format: str) -> Path:
        """The volume's data in ``disk_format`` for an image: the file itself when raw, else a converted copy
        (``upload_path``, removed by the caller)."""
        if disk_format == "raw" and self.format_of(volume_id) == "raw":
            return self.path(volume_id)
        target = self.upload_path(volume_id)
        qemu_format = {"vhd": "vpc"}.get(disk_format, disk_format)
        _qemu_img("convert", "-q", "-f", self.format_of(volume_id), "-O", qemu_format, str(self.path(volume_id)),
                  str(target))
        os.chmod(target, 0o600)
        return target

    def capacity_gb(self) -> tuple[float, float]:
        """(total, free) GiB of the filesystem holding the volumes."""
        stats = os.statvfs(self.directory)
        return stats.f_blocks * stats.f_frsize / GIB, stats.f_bavail * stats.f_frsize / GIB

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.directory / f"snapshot-{snapshot_id}"

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """A full copy of the volume's file at this moment, as sparse as the volume (a qcow2 volume: a new
        overlay made its active file; nothing may have the volume open)."""
        if self.chains.has(volume_id):
            self.chains.make_overlay(volume_id, snapshot_id)
            self.chains.snapshot_taken(volume_id, snapshot_id)
            return
        _sparse_copy(self.path(volume_id), self.snapshot_path(snapshot_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """The snapshot's file gone (a qcow2 volume's: its data merged away; nothing may have it open)."""
        volume_id = self.chains.volume_of_snapshot(snapshot_id)
        if volume_id is not None and self.chains.has(volume_id) and snapshot_id in self.chains.info(volume_id):
            self.chains.delete_offline(volume_id, snapshot_id)
            return
        self.snapshot_path(snapshot_id).unlink(missing_ok=True)


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy only the blocks written (``cp`` finds them with SEEK_DATA); the holes stay holes."""
    result = subprocess.run(["cp", "--sparse=always", "--", str(source), str(target)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise OSError(result.stderr.strip() or f"cp exited {result.returncode}")
    os.chmod(target, 0o600)


def _qemu_img(*args: str) -> str:
    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise ImageError(f"qemu-img {args[0]} failed: {result.stderr.strip()[-400:]}")
    return result.stdout
