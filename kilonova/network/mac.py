"""MAC addresses for ports: OpenStack's ``fa:16:3e`` prefix and three random bytes."""
from __future__ import annotations

import re
import secrets

PREFIX = "fa:16:3e"
_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


def random_mac() -> str:
    return PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def normalize(value: object) -> str | None:
    """The canonical form of a valid unicast MAC, or None."""
    if not isinstance(value, str) or not _MAC.match(value):
        return None
    mac = value.lower().replace("-", ":")
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        return None
    return mac
