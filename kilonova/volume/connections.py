"""The ``connection_info`` a host is given for a volume, chosen from the connector it sends.

A host on this machine (the connector's ``ip`` is one of this machine's addresses, or it sends none)
opens the volume's file itself: ``driver_volume_type: local`` with the file as ``device_path``, what
os-brick's local connector takes. Nothing is exported, so nothing needs tearing down.

A host on another machine is given the volume over NBD (``driver_volume_type: nbd``: ``host``,
``port`` and export ``name``, served by ``qemu-nbd``; why NBD rather than iSCSI: see exports.py).
"""
from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def local_addresses() -> frozenset[str]:
    """This machine's addresses, as far as its name resolves (loopback always)."""
    found = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(info[4][0])
    except OSError:
        pass
    return frozenset(found)


def is_local(connector: dict[str, Any], extra: tuple[str, ...] = ()) -> bool:
    address = connector.get("ip")
    if not address:
        return True
    if address in local_addresses() or address in extra:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def access_mode(attach_mode: str, connector: dict[str, Any], readonly: bool = False) -> str:
    """``rw`` or ``ro``: a read-only volume's always ``ro``; else the attachment's mode (3.54), else the
    connector's, else read-write."""
    if readonly:
        return "ro"
    if attach_mode in ("rw", "ro"):
        return attach_mode
    mode = connector.get("mode")
    return mode if mode in ("rw", "ro") else "rw"


def _common(volume_id: str, attachment_id: str | None, mode: str, fmt: str = "raw") -> dict[str, Any]:
    return {"volume_id": volume_id, "attachment_id": attachment_id, "access_mode": mode, "format": fmt,
            "encrypted": False, "qos_specs": None, "discard": True, "cacheable": False}


def local_info(path: Path, volume_id: str, attachment_id: str | None, mode: str, fmt: str = "raw") -> dict[str, Any]:
    """The file itself; ``format`` qcow2 for a qcow2 volume's active file (an export over NBD is always raw:
    qemu-nbd serves the data, not the file)."""
    return {"driver_volume_type": "local",
            "data": {"device_path": str(path), **_common(volume_id, attachment_id, mode, fmt)}}


def nbd_info(host: str, port: int, volume_id: str, attachment_id: str | None, mode: str) -> dict[str, Any]:
    address = f"[{host}]" if ":" in host else host
    return {"driver_volume_type": "nbd",
            "data": {"host": host, "port": port, "name": volume_id,
                     "export": f"nbd://{address}:{port}/{volume_id}", **_common(volume_id, attachment_id, mode)}}
