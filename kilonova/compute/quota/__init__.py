"""The compute quota engine: the driver ``[quota] driver`` names, and what the API handlers ask of it.

Every driver answers in the quota-sets API's resource names (``instances``, ``cores``, ``key_pairs``, ...):
the classic driver from the API database and ``[quota]``, the unified limits driver from Keystone's
registered limits and limits (converted as upstream does), the no-op driver with -1 everywhere.
"""
from __future__ import annotations

from typing import Any

from kilonova.config import ConfigError

# [quota] driver values: upstream's class paths and the short names.
DRIVERS = {"nova.quota.DbQuotaDriver": "db", "db": "db", "DbQuotaDriver": "db",
           "nova.quota.UnifiedLimitsDriver": "unified_limits", "unified_limits": "unified_limits",
           "UnifiedLimitsDriver": "unified_limits",
           "nova.quota.NoopQuotaDriver": "noop", "noop": "noop", "NoopQuotaDriver": "noop"}


def driver_name(conf) -> str:
    configured = conf.get("quota", "driver").strip()
    try:
        return DRIVERS[configured]
    except KeyError:
        raise ConfigError(f"[quota] driver = {configured}: not one of nova.quota.DbQuotaDriver, "
                          "nova.quota.UnifiedLimitsDriver (unified_limits), nova.quota.NoopQuotaDriver") from None


def uses_unified_limits(conf) -> bool:
    return driver_name(conf) == "unified_limits"


def driver(svc) -> Any:
    """The compute API service's quota driver (made once per service)."""
    made = getattr(svc, "_quota_driver", None)
    if made is None:
        name = driver_name(svc.conf)
        if name == "unified_limits":
            from kilonova.compute.quota.unified import UnifiedLimitsDriver as chosen
        elif name == "noop":
            from kilonova.compute.quota.classic import NoopDriver as chosen
        else:
            from kilonova.compute.quota.classic import ClassicDriver as chosen
        made = svc._quota_driver = chosen(svc)
    return made


async def limits(svc, project_id: str) -> dict[str, int]:
    """resource -> limit (-1: unlimited) of a project, in the quota-sets API's names."""
    return await driver(svc).limits(project_id)


def refusal(svc, resource: str, limit: int, usage: int, delta: int, classic: str):
    """The 403 for a limit Nova checks itself (metadata items, key pairs, server groups, group members,
    injected files): the classic driver's words (``classic``, which may name ``{limit}``), or with unified
    limits oslo.limit's, as Nova words them (checked with no project: the registered limit)."""
    from kilonova.common.http import HTTPError
    from kilonova.compute.quota.unified import KEYSTONE_NAMES, OverLimit

    if driver_name(svc.conf) != "unified_limits":
        return HTTPError(403, classic.format(limit=limit))
    over = OverLimit(KEYSTONE_NAMES[resource], limit, usage, delta)
    return HTTPError(403, f"Project None is over a limit for [{over}]")


async def check_local(svc, project_id: str, resource: str, usage: int, delta: int, classic: str) -> None:
    """403 (``refusal``) when ``usage + delta`` passes the project's limit of ``resource`` (-1: none)."""
    limit = (await limits(svc, project_id)).get(resource, -1)
    if 0 <= limit < usage + delta:
        raise refusal(svc, resource, limit, usage, delta, classic)
