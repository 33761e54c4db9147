"""Query parameters of GET /servers and /servers/detail: which names upstream's schema knows per
microversion (from 2.75 any other is a 400), time filters and boolean filters as upstream parses them."""
from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request

from kilonova.common.http import HTTPError
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
    admin = request.state.context.is_admin
    raw = request.query_params.get("deleted") if admin else None
    if wants_deleted_status:
        if not admin:
            raise HTTPError(403, "Only administrators may list deleted instances")
        return True
    if raw is None:
        return None if timed else False
    return raw.strip().lower() in _TRUE  # upstream's lenient parse: anything else is False
