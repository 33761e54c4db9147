"""What a server records at create for fields later microversions show, kept in its system_metadata.

The instance row carries them from the build request into its cell, so showing
them never needs another read.
"""
from __future__ import annotations

import ipaddress
import json
from typing import Any

TRUSTED_CERTS = "trusted_image_certificates"
LOCKED_REASON = "locked_reason"


PINNED_AZ = "pinned_availability_zone"
IMAGE_PROPERTIES = "image_properties"
SCHEDULER_HINTS = "scheduler_hints"


def system_metadata(server: dict[str, Any], *, az: str | None, image_properties: dict[str, Any] | None = None,
                    hints: dict[str, Any] | None = None) -> dict[str, Any]:
    """The system_metadata of a new instance from the create request: its ``server`` body, the
    availability zone it asked for, its image's properties (2.98) and its scheduler hints (2.100)."""
    recorded: dict[str, Any] = {}
    if server.get(TRUSTED_CERTS):
        recorded[TRUSTED_CERTS] = list(server[TRUSTED_CERTS])
    if az:
        recorded[PINNED_AZ] = az
    if image_properties:
        recorded[IMAGE_PROPERTIES] = {key: None if value is None else str(value)
                                      for key, value in image_properties.items()}
    if hints:
        recorded[SCHEDULER_HINTS] = dict(hints)
    return recorded


def image_properties(server: dict[str, Any]) -> dict[str, Any]:
    return (server.get("system_metadata") or {}).get(IMAGE_PROPERTIES) or {}


def scheduler_hints(server: dict[str, Any]) -> dict[str, list[str]]:
    """The create's hints as upstream's request spec keeps (and 2.100 shows) them: each a list of strings."""
    hints = (server.get("system_metadata") or {}).get(SCHEDULER_HINTS) or {}
    return {name: [_text(item) for item in value] if isinstance(value, list) else [_text(value)]
            for name, value in hints.items()}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def with_pinned_az(server: dict[str, Any], zone: str | None) -> dict[str, Any]:
    """The server's system_metadata pinned to ``zone`` (2.104), or unpinned when None."""
    recorded = dict(server.get("system_metadata") or {})
    recorded.pop(PINNED_AZ, None)
    if zone is not None:
        recorded[PINNED_AZ] = zone
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


def access_ip(value: str | None) -> str | None:
    """accessIPv4/accessIPv6 as upstream stores (and so echoes) them: the address in its canonical form
    (an IPv6 address compressed and in lower case), the schema having checked it is one."""
    if not value:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value
