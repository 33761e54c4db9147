"""The state an evacuation leaves its server in: from microversion 2.95 STOPPED, whatever it was, as
upstream. The API marks the server's system_metadata when it starts the evacuation; the destination's
agent reads the mark and drops it when the server is there (an agent never sees the request's version)."""
from __future__ import annotations

from typing import Any

STOPPED = "evacuate_to_stopped"


def marked(server: dict[str, Any]) -> dict[str, Any]:
    """The server's system_metadata with the mark set."""
    return {**(server.get("system_metadata") or {}), STOPPED: True}


def take(system_metadata: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]:
    """(whether the mark was set, the system_metadata without it)."""
    rest = dict(system_metadata or {})
    return bool(rest.pop(STOPPED, False)), rest
