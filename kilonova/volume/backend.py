"""File-backed volumes: one sparse raw file per volume in ``[volume] volumes_dir``.

A raw file is what QEMU attaches with no format probing and what ``qemu-nbd`` or an iSCSI target can
serve later; sparse, so a 1 GiB volume costs only the blocks a guest writes.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIB = 1024 ** 3


class FileBackend:
    def __init__(self, directory: str):
        self.directory = Path(directory)

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, volume_id: str) -> Path:
        return self.directory / f"volume-{volume_id}"

    def create(self, volume_id: str, size_gb: int) -> None:
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
        _sparse_copy(source, self.path(volume_id))
        os.truncate(self.path(volume_id), size_gb * GIB)

    def extend(self, volume_id: str, size_gb: int) -> None:
        path = self.path(volume_id)
        if path.stat().st_size > size_gb * GIB:
            raise OSError(f"{path} is larger than {size_gb} GiB")
        os.truncate(path, size_gb * GIB)

    def delete(self, volume_id: str) -> None:
        self.path(volume_id).unlink(missing_ok=True)

    def size_gb(self, volume_id: str) -> int | None:
        """The allocated size, or None when the volume has no file."""
        try:
            return self.path(volume_id).stat().st_size // GIB
        except FileNotFoundError:
            return None

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.directory / f"snapshot-{snapshot_id}"

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """A full copy of the volume's file at this moment, as sparse as the volume."""
        _sparse_copy(self.path(volume_id), self.snapshot_path(snapshot_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_path(snapshot_id).unlink(missing_ok=True)


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy only the blocks written (``cp`` finds them with SEEK_DATA); the holes stay holes."""
    result = subprocess.run(["cp", "--sparse=always", "--", str(source), str(target)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise OSError(result.stderr.strip() or f"cp exited {result.returncode}")
    os.chmod(target, 0o600)
