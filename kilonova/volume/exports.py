"""Volumes served to compute hosts on other machines: one ``qemu-nbd`` per exported volume.

Why NBD and not iSCSI: the volumes are raw files, and ``qemu-nbd`` serves a file as it is, as an
unprivileged process with no kernel target, configfs or ``targetcli`` on the volume host; QEMU on the
compute host opens ``nbd://host:port/export`` with its own block driver (``<source protocol='nbd'>``
in libvirt), so the compute host needs no initiator, no ``iscsid``, no kernel module and no device node
either. Upstream deployments know both (Cinder's LVM driver with LIO, and QEMU's NBD client that Nova's
live block migration already uses); for file-backed volumes NBD is the one with the fewest moving parts.
NBD has no authentication of its own: the export listens on ``[volume] target_ip_address`` (the
storage network) only, as an iSCSI target without CHAP would.

An export is made when the first remote connection of a volume is made, and stopped when its last one
goes. Each is recorded in ``<volumes_dir>/nbd-<volume id>`` (pid and port), so that a restarted service
finds the servers it started (still serving: kept) or serves the volume again on the same port (the
compute hosts' connection_info names it).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

LOG = logging.getLogger(__name__)
START_TIMEOUT = 10.0


class ExportError(OSError):
    pass


class NbdExports:
    def __init__(self, directory: Path, address: str, ports: range, format_of=lambda volume_id: "raw"):
        self.directory = directory
        self.format_of = format_of  # the volume's file format (raw, or qcow2: qemu-nbd serves its data raw)
        self.address = address
        self.ports = ports
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._lock = asyncio.Lock()

    def _record(self, volume_id: str) -> Path:
        return self.directory / f"nbd-{volume_id}"

    def recorded(self) -> dict[str, tuple[int, int]]:
        """Every export on record: volume id -> (pid, port)."""
        found = {}
        for path in self.directory.glob("nbd-*"):
            try:
                pid, port = (int(x) for x in path.read_text().split())
            except (OSError, ValueError):
                continue
            found[path.name[4:]] = (pid, port)
        return found

    def port_of(self, volume_id: str) -> int | None:
        entry = self.recorded().get(volume_id)
        return entry[1] if entry else None

    async def export(self, volume_id: str, path: Path, port: int | None = None) -> int:
        """The port the volume is served on: its running export's, else a new one's (on ``port`` if given)."""
        async with self._lock:
            entry = self.recorded().get(volume_id)
            if entry and _serving(entry[0], volume_id):
                return entry[1]
            candidates = [port] if port else [p for p in self.ports if p not in self._ports_in_use()]
            for candidate in candidates:
                if not _free(self.address, candidate):
                    continue
                try:
                    await self._start(volume_id, path, candidate)
                except ExportError as exc:
                    LOG.warning("volume %s: qemu-nbd on port %d failed: %s", volume_id, candidate, exc)
                    continue
                return candidate
            raise ExportError(f"no free port in {self.ports.start}-{self.ports.stop - 1} to export {volume_id}")

    def _ports_in_use(self) -> set[int]:
        return {port for _pid, port in self.recorded().values()}

    async def _start(self, volume_id: str, path: Path, port: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            "qemu-nbd", "--persistent", "--shared=0", f"--format={self.format_of(volume_id)}", "--cache=none",
            "--aio=threads",
            f"--bind={self.address}", f"--port={port}", f"--export-name={volume_id}", str(path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not await asyncio.to_thread(_accepts, self.address, port):
            if proc.returncode is not None or loop.time() > deadline:
                if proc.returncode is None:
                    proc.kill()
                stderr = (await proc.stderr.read()).decode(errors="replace").strip()
                await proc.wait()
                raise ExportError(stderr[-300:] or "qemu-nbd did not start")
            await asyncio.sleep(0.05)
        self._procs[volume_id] = proc
        record = self._record(volume_id)
        record.write_text(f"{proc.pid} {port}\n")
        os.chmod(record, 0o600)
        LOG.info("volume %s exported over NBD on %s:%d", volume_id, self.address, port)

    async def unexport(self, volume_id: str) -> None:
        async with self._lock:
            entry = self.recorded().get(volume_id)
            proc = self._procs.pop(volume_id, None)
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
            elif entry and _serving(entry[0], volume_id):   # started by an earlier run of the service
                os.kill(entry[0], signal.SIGTERM)
            self._record(volume_id).unlink(missing_ok=True)

    async def restore(self, wanted: dict[str, Path]) -> None:
        """After a restart: exports still wanted are served (again, on their port); the others stopped."""
        for volume_id, (pid, port) in self.recorded().items():
            if volume_id not in wanted:
                await self.unexport(volume_id)
            elif not _serving(pid, volume_id):
                self._record(volume_id).unlink(missing_ok=True)
                try:
                    await self.export(volume_id, wanted[volume_id], port)
                except ExportError as exc:
                    LOG.error("volume %s: serving it again on port %d failed: %s", volume_id, port, exc)

    async def stop(self) -> None:
        """The service stops: exports stay up (guests keep their disks); a restart adopts them."""
        self._procs.clear()


def _serving(pid: int, volume_id: str) -> bool:
    """Whether ``pid`` is a qemu-nbd serving this volume (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"qemu-nbd") and f"--export-name={volume_id}".encode() in cmdline


def _free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
