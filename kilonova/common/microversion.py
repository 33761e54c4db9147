"""The microversion a request asks for, read the same way by every versioned API (compute, Placement,
block storage): upstream's ``microversion-parse`` library, as Nova and Placement use it -- the
``OpenStack-API-Version: <service> <version>`` header (repeated headers folded into one comma-separated
value, the last entry for the service winning), then the service's legacy headers.

What a malformed or unsupported version answers differs between upstream's services (texts, 400 or 406),
so each API keeps its own small ``negotiate`` around these functions, and its list of versions.
"""
from __future__ import annotations

import functools
import re

import microversion_parse
from starlette.requests import Request

_X_Y = re.compile(r"^([1-9]\d*|0)\.([1-9]\d*|0)$")


def requested(request: Request, service_type: str, legacy_headers: tuple[str, ...] = ()) -> str | None:
    """The version text asked for (``"latest"`` as given), or None when the request names none."""
    headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in request.scope.get("headers", ())]
    return microversion_parse.get_version(headers, service_type, legacy_headers or None)


@functools.lru_cache(maxsize=512)
def parse(text: str) -> tuple[int, int] | None:
    """``"X.Y"`` as numbers (no sign, no leading zero), or None when it is not that form."""
    match = _X_Y.match(text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
