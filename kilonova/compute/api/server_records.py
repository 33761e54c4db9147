"""What a server records at create for fields later microversions show, kept in its system_metadata.

The instance row carries them from the build request into its cell, so showing
them never needs another read.
"""
from __future__ import annotations

from typing import Any

TRUSTED_CERTS = "trusted_image_certificates"
LOCKED_REASON = "locked_reason"


PINNED_AZ = "pinned_availability_zone"


def system_metadata(server: dict[str, Any], *, az: str | None) -> dict[str, Any]:
    """The system_metadata of a new instance from the create request: its ``server`` body and the
    availability zone it asked for."""
    recorded: dict[str, Any] = {}
    if server.get(TRUSTED_CERTS):
        recorded[TRUSTED_CERTS] = list(server[TRUSTED_CERTS])
    if az:
        recorded[PINNED_AZ] = az
    return recorded


def pinned_az(server: dict[str, Any]) -> str | None:
    """The zone the server asked for at create, where moves would keep it (2.96)."""
    return (server.get("system_metadata") or {}).get(PINNED_AZ)


def trusted_certs(server: dict[str, Any]) -> list[str] | None:
    return (server.get("system_metadata") or {}).get(TRUSTED_CERTS)


def locked_reason(server: dict[str, Any]) -> str | None:
    return (server.get("system_metadata") or {}).get(LOCKED_REASON)


def with_locked_reason(server: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The server's system_metadata with ``reason`` recorded (or the old reason dropped when None)."""
    recorded = dict(server.get("system_metadata") or {})
    recorded.pop(LOCKED_REASON, None)
    if reason is not None:
        recorded[LOCKED_REASON] = reason
    return recorded
