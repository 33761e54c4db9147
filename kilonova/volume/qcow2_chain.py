"""qcow2 file-backed volumes (``[volume] volume_format = qcow2``): a chain of qcow2 files per volume, snapshots
by overlays, as Cinder's file-based (remotefs/NFS) drivers keep them.

A volume starts as ``volume-<id>`` (qcow2). A snapshot adds an overlay ``volume-<id>.<snapshot id>`` on top of
the active file (its backing file named relatively, in the same directory) and makes it the active file: the
snapshot's data is the overlay's backing file, which nothing writes any more. ``volume-<id>.info`` (JSON, as
Cinder's ``.info`` file) names the active file and each snapshot's overlay; ``snapshot-<snapshot id>`` is a
symlink to the overlay, so that a snapshot is found by its id alone.

Deleting a snapshot merges its data away, as Cinder does: with nothing running on the volume, ``qemu-img
commit`` of the snapshot's overlay into its backing file (the file above it rebased onto that one; when the
overlay was the active file, its backing file becomes the active one). While a guest has the volume open only
its hypervisor may change the chain: the volume service asks the compute service
(``os-assisted-volume-snapshots``) with ``delete_info`` and changes the files and the info as the merge leaves
them -- ``plan_online_delete`` says what to ask and what to change afterwards.

Every file of such a volume is qcow2 and is only ever opened as qcow2 (never probed): a guest's data cannot
make the service read another file.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

GIB = 1024 ** 3


def _qemu_img(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=3600, cwd=cwd)
    if result.returncode != 0:
        raise OSError(f"qemu-img {args[0]} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


class Chains:
    def __init__(self, directory: Path):
        self.directory = directory

    def info_path(self, volume_id: str) -> Path:
        return self.directory / f"volume-{volume_id}.info"

    def has(self, volume_id: str) -> bool:
        return self.info_path(volume_id).exists()

    def info(self, volume_id: str) -> dict[str, str]:
        return json.loads(self.info_path(volume_id).read_text())

    def write_info(self, volume_id: str, info: dict[str, str]) -> None:
        """The info file, and a symlink per snapshot to its overlay (written whole, then renamed)."""
        partial = self.info_path(volume_id).with_suffix(".info.part")
        partial.write_text(json.dumps(info))
        os.chmod(partial, 0o600)
        partial.rename(self.info_path(volume_id))
        for snapshot_id, overlay in info.items():
            if snapshot_id != "active":
                link = self.snapshot_link(snapshot_id)
                link.unlink(missing_ok=True)
                link.symlink_to(overlay)

    def snapshot_link(self, snapshot_id: str) -> Path:
        return self.directory / f"snapshot-{snapshot_id}"

    def active(self, volume_id: str) -> Path:
        return self.directory / self.info(volume_id)["active"]

    def volume_of_snapshot(self, snapshot_id: str) -> str | None:
        """The volume a snapshot's overlay belongs to (from the symlink's target, ``volume-<id>.<snap>``)."""
        link = self.snapshot_link(snapshot_id)
        if not link.is_symlink():
            return None
        return os.readlink(link)[len("volume-"):].rsplit(".", 1)[0]

    def backing(self, path: Path) -> Path | None:
        """A file's backing file (its header, read as qcow2: never probed)."""
        info = json.loads(_qemu_img("info", "-U", "-f", "qcow2", "--output", "json", str(path)))
        name = info.get("backing-filename")
        return self.directory / Path(name).name if name else None

    def snapshot_data(self, snapshot_id: str) -> Path:
        """The file holding a snapshot's data: its overlay's backing file."""
        data = self.backing(self.directory / os.readlink(self.snapshot_link(snapshot_id)))
        if data is None:
            raise OSError(f"snapshot {snapshot_id}: its overlay has no backing file")
        return data

    # ---------------------------------------------------------------- volumes

    def create(self, volume_id: str, size_gb: int) -> None:
        base = self.directory / f"volume-{volume_id}"
        _qemu_img("create", "-q", "-f", "qcow2", str(base), str(size_gb * GIB))
        os.chmod(base, 0o600)
        self.write_info(volume_id, {"active": base.name})

    def adopt(self, volume_id: str, written: Path) -> None:
        """A qcow2 file written elsewhere (a copy, an image) becomes the volume's base, its only file."""
        base = self.directory / f"volume-{volume_id}"
        os.chmod(written, 0o600)
        written.rename(base)
        self.write_info(volume_id, {"active": base.name})

    def extend(self, volume_id: str, size_gb: int) -> None:
        _qemu_img("resize", "-q", "-f", "qcow2", str(self.active(volume_id)), str(size_gb * GIB))

    def size_gb(self, volume_id: str) -> int:
        info = json.loads(_qemu_img("info", "-U", "-f", "qcow2", "--output", "json", str(self.active(volume_id))))
        return int(info["virtual-size"]) // GIB

    def delete(self, volume_id: str) -> None:
        if self.has(volume_id):
            for snapshot_id in self.info(volume_id):
                if snapshot_id != "active":
                    self.snapshot_link(snapshot_id).unlink(missing_ok=True)
        for path in self.directory.glob(f"volume-{volume_id}*"):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- snapshots

    def overlay_name(self, volume_id: str, snapshot_id: str) -> str:
        return f"volume-{volume_id}.{snapshot_id}"

    def make_overlay(self, volume_id: str, snapshot_id: str) -> Path:
        """The new overlay on the active file (not active yet: ``snapshot_taken`` makes it so)."""
        overlay = self.directory / self.overlay_name(volume_id, snapshot_id)
        _qemu_img("create", "-q", "-f", "qcow2", "-b", self.active(volume_id).name, "-F", "qcow2", overlay.name,
                  cwd=self.directory)
        os.chmod(overlay, 0o600)
        return overlay

    def overlay_path(self, volume_id: str, snapshot_id: str) -> Path:
        return self.directory / self.overlay_name(volume_id, snapshot_id)

    def adopted(self, volume_id: str, snapshot_id: str) -> bool:
        """Whether the snapshot is in the volume's chain (its overlay was made the active file)."""
        return self.has(volume_id) and snapshot_id in self.info(volume_id)

    def in_use(self, path: Path) -> bool:
        """Whether a running QEMU holds the file open for writing (qemu-img cannot take its lock): a guest's disk
        was switched onto it, whatever the host managed to report."""
        result = subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output", "json", str(path)],
                                capture_output=True, text=True, timeout=60)
        return result.returncode != 0 and "lock" in result.stderr

    def plan_path(self, volume_id: str, snapshot_id: str) -> Path:
        return self.directory / f"{self.overlay_name(volume_id, snapshot_id)}.delete"

    def save_plan(self, volume_id: str, snapshot_id: str, stale: Path, after: dict[str, str]) -> None:
        """An online delete's outcome, written before the host is asked: a volume service restarted while the
        host merges finishes it from this, as the chain's headers may have changed under it already."""
        path = self.plan_path(volume_id, snapshot_id)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps({"stale": stale.name, "after": after}))
        partial.rename(path)

    def load_plan(self, volume_id: str, snapshot_id: str) -> tuple[Path, dict[str, str]] | None:
        try:
            plan = json.loads(self.plan_path(volume_id, snapshot_id).read_text())
        except FileNotFoundError:
            return None
        return self.directory / Path(plan["stale"]).name, plan["after"]

    def drop_plan(self, volume_id: str, snapshot_id: str) -> None:
        self.plan_path(volume_id, snapshot_id).unlink(missing_ok=True)

    def snapshot_taken(self, volume_id: str, snapshot_id: str) -> None:
        info = self.info(volume_id)
        info[snapshot_id] = info["active"] = self.overlay_name(volume_id, snapshot_id)
        self.write_info(volume_id, info)

    def drop_overlay(self, volume_id: str, snapshot_id: str) -> None:
        """A snapshot that failed: its overlay, never made active, goes."""
        (self.directory / self.overlay_name(volume_id, snapshot_id)).unlink(missing_ok=True)

    def _above(self, volume_id: str, target: Path) -> Path | None:
        """The file of the chain whose backing file is ``target``."""
        current = self.active(volume_id)
        while current is not None and current != target:
            below = self.backing(current)
            if below == target:
                return current
            current = below
        return None

    def delete_offline(self, volume_id: str, snapshot_id: str) -> None:
        info = self.info(volume_id)
        overlay = self.directory / info[snapshot_id]
        base = self.backing(overlay)
        above = self._above(volume_id, overlay)
        _qemu_img("commit", "-q", "-f", "qcow2", "-d", str(overlay))   # its data into base; overlay unused
        if above is not None:
            _qemu_img("rebase", "-u", "-f", "qcow2", "-b", base.name, "-F", "qcow2", above.name, cwd=self.directory)
        if info["active"] == overlay.name:
            info["active"] = base.name
        del info[snapshot_id]
        self.write_info(volume_id, info)
        self.snapshot_link(snapshot_id).unlink(missing_ok=True)
        overlay.unlink(missing_ok=True)

    def plan_online_delete(self, volume_id: str, snapshot_id: str) -> tuple[dict[str, Any], Path, dict[str, str]]:
        """(delete_info for the compute service, the file to remove once it merged, the info afterwards), as
        Cinder's remotefs decides: the snapshot's overlay being the active file, the active file pulls the
        snapshot's data (its backing file goes; a snapshot whose overlay that was now names the active one);
        else the overlay is committed into its backing file and goes."""
        info = self.info(volume_id)
        overlay = self.directory / info[snapshot_id]
        base = self.backing(overlay)
        after = {k: v for k, v in info.items() if k != snapshot_id}
        if info["active"] == overlay.name:
            below = self.backing(base)
            for other, name in info.items():
                if other not in ("active", snapshot_id) and name == base.name:
                    after[other] = overlay.name
            return ({"type": "qcow2", "volume_id": volume_id, "file_to_merge": below.name if below else None,
                     "merge_target_file": None}, base, after)
        return ({"type": "qcow2", "volume_id": volume_id, "file_to_merge": overlay.name,
                 "merge_target_file": base.name}, overlay, after)

    def online_deleted(self, volume_id: str, snapshot_id: str, stale: Path, after: dict[str, str]) -> None:
        self.write_info(volume_id, after)
        self.snapshot_link(snapshot_id).unlink(missing_ok=True)
        stale.unlink(missing_ok=True)
