"""Query parameters of GET /servers and /servers/detail: which names upstream's schema knows per
microversion (from 2.75 any other is a 400), which of them a non-admin may use (upstream drops the
others silently), and what each filter matches.

As upstream: ``project_id``, ``user_id``, ``image``, ``uuid``, ``host``, ``task_state`` and ``vm_state``
match exactly; the other string filters (``name``, ``hostname``, ``node``, ``availability_zone``,
``key_name``, ``config_drive``, ...) are regular expressions searched in the column's text (on
SQLite Python's ``re.search``, on PostgreSQL ``~``); ``ip``/``ip6`` match part of a fixed address (after
dropping a leading ``^``, a trailing ``$`` and ``\\.`` escapes, as Nova hands them to Neutron); the tag
filters take comma-separated tags.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.compute.api import common, views
from kilonova.compute.api.microversions import want

_BASE = frozenset({
    "user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "kernel_id", "ramdisk_id",
    "hostname", "key_name", "power_state", "vm_state", "task_state", "host", "node", "flavor", "reservation_id",
    "launched_at", "terminated_at", "availability_zone", "name", "display_name", "description",
    "display_description", "locked_by", "uuid", "root_device_name", "config_drive", "access_ip_v4",
    "access_ip_v6", "auto_disk_config", "progress", "sort_key", "sort_dir", "all_tenants", "soft_deleted",
    "deleted", "status", "changes-since", "ip", "ip6", "created_at", "limit", "marker",
    # joined-table fields: known to the schema so that they are refused as filters, not as unknown
    "block_device_mapping", "services", "metadata", "system_metadata", "info_cache", "security_groups",
    "pci_devices",
})
_TAGS = frozenset({"tags", "tags-any", "not-tags", "not-tags-any"})  # 2.26
_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def known(request: Request) -> frozenset[str]:
    names = _BASE
    if want(request, "2.26"):
        names |= _TAGS
    if want(request, "2.66"):
        names |= {"changes-before"}
    if want(request, "2.73"):
        names |= {"locked"}
    return names


def check_unknown(request: Request) -> None:
    """From 2.75 a parameter upstream's schema does not know is refused (names starting with '_' too)."""
    if not want(request, "2.75"):
        return
    names = known(request)
    unknown = sorted(name for name in request.query_params if name not in names and not name.startswith("_"))
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        verb = "was" if len(unknown) == 1 else "were"
        raise HTTPError(400, f"Additional properties are not allowed ({listed} {verb} unexpected)")


def timestamp(request: Request, name: str) -> datetime | None:
    """An ISO 8601 query value as naive UTC (how the cell databases store times); 400 when malformed."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(400, f"Invalid filter field: {name}.") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def strict_bool(request: Request, name: str) -> bool | None:
    """oslo's strict bool_from_string, as upstream parses ``locked``."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    accepted = ", ".join(f"'{v}'" for v in sorted(_TRUE + _FALSE))
    raise HTTPError(400, f"Invalid input received: Unrecognized value '{raw}', acceptable values are: {accepted}")


def deleted(request: Request, *, timed: bool, wants_deleted_status: bool) -> bool | None:
    """Which servers a list shows by deletion, as upstream's ``deleted`` filter: False (the default),
    the live ones that are not soft-deleted; True (``?deleted=true``, or ``?status=DELETED``), only the
    deleted and soft-deleted ones; None, both, for a time window (``changes-since`` / ``changes-before``)
    without ``deleted``. Only an administrator's ``deleted`` counts: upstream drops it for the others,
    and refuses them ``status=DELETED``."""
    raw = request.query_params.get("deleted") if all_filters(request) else None
    if wants_deleted_status:
        if not request.state.context.is_admin:  # upstream asks the context here, not a policy rule
            raise HTTPError(403, "Only administrators may list deleted instances")
        return True
    if raw is None:
        return None if timed else False
    return raw.strip().lower() in _TRUE  # upstream's lenient parse: anything else is False


# ---------------------------------------------------------------- who may use which filter

_NON_ADMIN = ("reservation_id", "name", "status", "image", "flavor", "ip", "changes-since", "all_tenants")
# 2.83 opened these to every user, 2.90 the hostname.
_NON_ADMIN_2_83 = ("availability_zone", "config_drive", "key_name", "created_at", "launched_at", "terminated_at",
                   "power_state", "task_state", "vm_state", "progress", "user_id")


def all_filters(request: Request) -> bool:
    """Whether the caller may use every filter (upstream's allow_all_filters rule), asked once per request."""
    cached = getattr(request.state, "all_server_filters", None)
    if cached is None:
        cached = request.state.all_server_filters = common.allowed(request, "os_compute_api:servers:allow_all_filters")
    return cached


def allowed(request: Request) -> frozenset[str] | None:
    """The filters a non-admin may use at this version (None: an admin, who may use every known one)."""
    if all_filters(request):
        return None
    names = set(_NON_ADMIN)
    if want(request, "2.5"):
        names.add("ip6")
    if want(request, "2.26"):
        names |= _TAGS
    if want(request, "2.66"):
        names.add("changes-before")
    if want(request, "2.73"):
        names.add("locked")
    if want(request, "2.83"):
        names |= set(_NON_ADMIN_2_83)
    if want(request, "2.90"):
        names.add("hostname")
    return frozenset(names)


def options(request: Request) -> dict[str, str]:
    """The filters of the request that count: each with its last value (as upstream reads a repeated
    one), those a non-admin may not use left out, as upstream drops them."""
    permitted = allowed(request)
    return {name: value for name, value in request.query_params.items()
            if permitted is None or name in permitted}


# ---------------------------------------------------------------- what each filter matches

# Filters on one column: exact, or a regular expression searched in the column's text.
_EXACT = {"user_id": "user_id", "uuid": "uuid", "host": "host", "task_state": "task_state"}
_REGEX = {"name": "display_name", "display_name": "display_name", "hostname": "hostname", "node": "node",
          "availability_zone": "availability_zone", "config_drive": "config_drive", "key_name": "key_name",
          "reservation_id": "reservation_id", "launch_index": "launch_index", "power_state": "power_state",
          "progress": "progress", "description": "display_description",
          "display_description": "display_description", "access_ip_v4": "access_ip_v4",
          "access_ip_v6": "access_ip_v6", "created_at": "created_at", "launched_at": "launched_at",
          "terminated_at": "terminated_at", "locked_by": "locked_by"}
# Known columns no server here has a value in (shown as "" or not at all): a pattern that does not
# match the empty text matches no server.
_EMPTY = ("kernel_id", "ramdisk_id", "root_device_name", "auto_disk_config")


# The parameters upstream's schema types as regular expressions (checked for every caller, before a
# member's admin-only filters are dropped).
_REGEX_PARAMS = frozenset(_REGEX) | set(_EMPTY) | {"flavor", "ip", "ip6"} | _TAGS
# Known to the schema but no filter: upstream's 400 (after a member's are dropped), and names starting '_'.
_JOINED = ("block_device_mapping", "services", "metadata", "system_metadata", "info_cache", "security_groups",
           "pci_devices")


def pattern(name: str, value: str) -> str:
    """A filter's regular expression, checked: 400 when it does not compile (never the database's 500)."""
    try:
        re.compile(value)
    except re.error:
        raise HTTPError(400, f"Invalid input for query parameters {name}. Value: {value}. "
                             f"{value!r} is not a 'regex'") from None
    return value


def _check(request: Request, opts: dict[str, str]) -> None:
    for name, value in request.query_params.multi_items():
        if name in _REGEX_PARAMS:
            pattern(name, value)
    for name in opts:
        if name in _JOINED or name.startswith("_"):
            raise HTTPError(400, f"Invalid filter field: {name}.")


# The tag filters as the database applies them (instances.query's "tags:KIND").
_TAG_FILTERS = {"tags": "all", "tags-any": "any", "not-tags": "not-all", "not-tags-any": "not-any"}


def tag_list(value: str) -> list[str]:
    return [tag for tag in value.split(",") if tag]


def ip_text(value: str) -> str:
    """What Nova hands Neutron for an ``ip``/``ip6`` filter: the regex anchors and escaped dots dropped."""
    return value.removeprefix("^").removesuffix("$").replace("\\.", ".")


def filters(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filters the database applies, filters applied to the rows in Python)."""
    opts = options(request)
    _check(request, opts)
    db: dict[str, Any] = {}
    post: dict[str, Any] = {}
    for name, column in _EXACT.items():
        if opts.get(name):
            db[column] = opts[name]
    for name, column in _REGEX.items():
        if opts.get(name):
            db["regex:" + column] = pattern(name, opts[name])
    if any(opts.get(name) and not re.search(pattern(name, opts[name]), "") for name in _EMPTY):
        post["nothing"] = True
    if opts.get("image"):
        db["image_ref"] = opts["image"].rstrip("/").rsplit("/", 1)[-1]
    if opts.get("flavor"):
        post["flavor"] = opts["flavor"]
    _status_filters(request, opts, db, post)
    since = timestamp(request, "changes-since") if "changes-since" in opts else None
    before = timestamp(request, "changes-before") if want(request, "2.66") and "changes-before" in opts else None
    if since is not None and before is not None and before < since:
        raise HTTPError(400, "The value of changes-since must be less than or equal to changes-before.")
    if since is not None:
        db["changes-since"] = since
    if before is not None:
        db["changes-before"] = before
    if "soft_deleted" in opts:  # an admin's; upstream reads the text's truth, so "false" counts as true too
        db["soft_deleted"] = bool(opts["soft_deleted"])
    if want(request, "2.73") and "locked" in opts:
        db["locked"] = strict_bool(request, "locked")
    for name in ("ip", "ip6"):
        if opts.get(name):
            post[name] = ip_text(opts[name])
    if want(request, "2.26"):
        for name, kind in _TAG_FILTERS.items():
            if tag_list(opts.get(name) or ""):
                db["tags:" + kind] = tag_list(opts[name])
    return db, post


def _status_filters(request: Request, opts: dict[str, str], db: dict[str, Any], post: dict[str, Any]) -> None:
    """``status`` (repeatable: any of them) and ``vm_state``, as vm_state lists the database applies."""
    statuses = [value.upper() for value in request.query_params.getlist("status") if value] if "status" in opts \
        else []
    vm_states: set[str] | None = None
    if statuses:
        unknown = [status for status in statuses if status not in views.STATUS_TO_VM_STATES]
        if unknown:
            if want(request, "2.38"):
                raise HTTPError(400, "Invalid status value")
            post["nothing"] = True  # before 2.38 an unknown status lists nothing
            return
        vm_states = {state for status in statuses for state in views.STATUS_TO_VM_STATES[status]}
        post["status"] = statuses
    if opts.get("vm_state"):
        wanted = {opts["vm_state"]}
        vm_states = wanted if vm_states is None else vm_states & wanted
    if vm_states is not None:
        db["vm_state"] = sorted(vm_states)


def pending_filter(db_filters: dict[str, Any]):
    """The database filters applied to a build request (a server not yet in a cell) in Python."""
    def matches(server: dict[str, Any]) -> bool:
        for key, value in db_filters.items():
            if key == "soft_deleted":
                continue  # a build request is never deleted
            if key in ("changes-since", "changes-before", "host"):
                return False  # never updated, never on a host yet
            if key.startswith("tags:"):
                if not tags_pass(key[5:], value, set(server.get("tags") or [])):
                    return False
            elif key.startswith("regex:"):
                found = server.get(key[6:])
                if found is None or not re.search(value, str(found)):
                    return False
            elif isinstance(value, list):
                if server.get(key) not in value:
                    return False
            elif key == "locked":
                if bool(server.get("locked")) != value:
                    return False
            elif server.get(key) != value:
                return False
        return True
    return matches


def post_filter(server: dict[str, Any], post: dict[str, Any]) -> bool:
    """True when a rendered-from row ``server`` passes the filters the database does not apply."""
    if post.get("nothing"):
        return False
    if "flavor" in post and server["flavor"]["id"] != post["flavor"]:
        return False
    if "status" in post and views.status_of(server["vm_state"], server.get("task_state")) not in post["status"]:
        return False
    for name, version in (("ip", 4), ("ip6", 6)):
        if name in post and not any(post[name] in address for address in _fixed_ips(server, version)):
            return False
    return True


def _fixed_ips(server: dict[str, Any], version: int) -> list[str]:
    return [ip["ip_address"] for vif in server.get("network_info") or [] for ip in vif.get("fixed_ips", [])
            if ip.get("version", 4) == version]


def tags_pass(kind: str, wanted: list[str], tags: set[str]) -> bool:
    """A tag filter (see ``_TAG_FILTERS``) on a server's ``tags`` in Python, as instances.query applies it:
    all of them, one of them, not all of them, none of them."""
    if kind == "all":
        return set(wanted) <= tags
    if kind == "any":
        return bool(set(wanted) & tags)
    if kind == "not-all":
        return not set(wanted) <= tags
    return not set(wanted) & tags
