"""The order of GET /servers: sort_key/sort_dir as upstream validates them, and one comparison for
every source (cells, build requests, a down cell's records) so their pages merge into one.

A missing value (SQL NULL) sorts before any other, in every database and here.
"""
from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.compute.api.microversions import want

# Keys upstream accepts but has always ignored (dropped before 2.75, refused from 2.75).
IGNORED_KEYS = ["architecture", "cell_name", "cleaned", "default_ephemeral_device", "default_swap_device",
                "deleted", "deleted_at", "disable_terminate", "ephemeral_gb", "ephemeral_key_uuid", "id",
                "key_data", "launched_on", "locked", "memory_mb", "os_type", "reservation_id", "root_gb",
                "shutdown_terminate", "user_data", "vcpus", "vm_mode"]
VALID_KEYS = ["access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone", "config_drive",
              "created_at", "display_description", "display_name", "host", "hostname", "image_ref",
              "instance_type_id", "kernel_id", "key_name", "launch_index", "launched_at", "locked_by", "node",
              "power_state", "progress", "project_id", "ramdisk_id", "root_device_name", "task_state",
              "terminated_at", "updated_at", "user_id", "uuid", "vm_state"]
ADMIN_ONLY_KEYS = ("host", "node")
# Valid keys whose value is the same for every server here (no such column is kept): ordering by them
# changes nothing, as upstream ordering by a column that holds one value.
CONSTANT_KEYS = {"auto_disk_config", "instance_type_id", "kernel_id", "ramdisk_id", "root_device_name"}
DEFAULT = (("created_at", "desc"), ("uuid", "desc"))


def _ignored(request: Request) -> list[str]:
    if want(request, "2.75"):
        return []
    return [key for key in IGNORED_KEYS if key != "locked" or not want(request, "2.73")]


def _valid(request: Request) -> list[str]:
    valid = list(VALID_KEYS)
    if want(request, "2.73"):
        valid.append("locked")
    return valid + _ignored(request)


def parse(request: Request) -> tuple[tuple[str, str], ...]:
    """The (key, direction) pairs to sort by, tie-breakers included; 400/403 as upstream answers."""
    params = request.query_params
    keys = [key.strip() for key in params.getlist("sort_key")]
    dirs = [direction.strip() for direction in params.getlist("sort_dir")]
    if not keys and not dirs:
        return DEFAULT
    valid = _valid(request)
    for key in keys:
        if key not in valid:
            raise HTTPError(400, f"Invalid input for query parameters sort_key. Value: {key}. "
                                 f"'{key}' is not one of {valid}")
    keys = keys or ["created_at"]
    dirs = dirs or ["desc"]
    ignored = _ignored(request)
    for key in list(keys):
        if key in ignored:
            index = keys.index(key)
            if len(dirs) > index:
                dirs.pop(index)
            keys.pop(index)
        elif key in ADMIN_ONLY_KEYS and not request.state.context.is_admin:  # upstream: the context, no rule
            raise HTTPError(403, f"Only administrators can sort servers by {key}")
    return _complete(keys, dirs)


def _complete(keys: list[str], dirs: list[str]) -> tuple[tuple[str, str], ...]:
    """Upstream's process_sort_params: one direction per key, created_at added, then the uuid tie-breaker."""
    default_dir = dirs[0] if dirs else "desc"
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise HTTPError(400, "Unknown sort direction, must be 'desc' or 'asc'")
    if len(dirs) > len(keys):
        raise HTTPError(400, "Sort direction size exceeds sort key size")
    dirs = dirs + [default_dir] * (len(keys) - len(dirs))
    pairs = [(key, direction) for key, direction in zip(keys, dirs) if key not in CONSTANT_KEYS]
    for key in ("created_at", "uuid"):
        if key not in keys:
            pairs.append((key, default_dir))
    return tuple(pairs)


def _compare(order: tuple[tuple[str, str], ...], a: dict[str, Any], b: dict[str, Any]) -> int:
    for key, direction in order:
        x, y = _value(a, key), _value(b, key)
        if x == y:
            continue
        smaller = y is not None and (x is None or x < y)
        result = -1 if smaller else 1
        return result if direction == "asc" else -result
    return 0


def _value(server: dict[str, Any], key: str) -> Any:
    value = server.get(key)
    if key == "locked":  # a build request has no lock yet: unlocked, as its instance will be
        return bool(value)
    return value


def sort_args(order: tuple[tuple[str, str], ...]) -> tuple[Any, bool]:
    """(key, reverse) for ``sorted`` to put servers (plain dicts) in ``order``.

    One direction for every key (the usual case, and the default) sorts on plain tuples, which
    is much faster on a page of a thousand servers than comparing pairs in Python.
    """
    directions = {direction for _key, direction in order}
    if len(directions) > 1:
        return functools.cmp_to_key(functools.partial(_compare, order)), False
    if order == DEFAULT:
        return (lambda server: (server["created_at"], server["uuid"])), True
    keys = [key for key, _direction in order]

    def key(server: dict[str, Any]) -> tuple:
        values = (_value(server, name) for name in keys)
        return tuple((value is not None, value) for value in values)
    return key, directions == {"desc"}


def is_after(order: tuple[tuple[str, str], ...], server: dict[str, Any], marker: dict[str, Any]) -> bool:
    """True when ``server`` comes strictly after the ``marker`` server in ``order``."""
    return _compare(order, server, marker) > 0
