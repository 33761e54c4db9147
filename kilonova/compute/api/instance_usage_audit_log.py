"""/v2.1/os-instance_usage_audit_log (admin): how far the compute hosts got with the instance usage audit of
the last completed period (a month, as upstream's default ``instance_usage_audit_period``), or of the period
completed before a given date (``/{before}``, "YYYY-MM-DD HH:MM:SS[.ffffff]").

No compute host here runs the periodic audit (upstream's ``instance_usage_audit`` is off by default too), so
there are no task logs: every compute host, disabled ones included, is reported as not run.
"""
from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import require_admin
from kilonova.compute.api.services import all_services


def last_completed_month(now: datetime) -> tuple[datetime, datetime]:
    """Upstream's last_completed_audit_period for a "month": the whole month that ended on or before ``now``
    (a period ending exactly at ``now`` is not yet completed)."""
    end = datetime(now.year, now.month, 1)
    if end >= now:
        end = datetime(now.year - 1, 12, 1) if now.month == 1 else datetime(now.year, now.month - 1, 1)
    begin = datetime(end.year - 1, 12, 1) if end.month == 1 else datetime(end.year, end.month - 1, 1)
    return begin, end


async def _report(request: Request, before: datetime | None) -> dict:
    begin, end = last_completed_month(before or datetime.now(timezone.utc).replace(tzinfo=None))
    hosts = sorted({service.host for _cell, service in await all_services(compute_api(request))
                    if service.topic == "compute" or service.binary == "nova-compute"})
    return {"period_beginning": str(begin), "period_ending": str(end), "num_hosts": len(hosts),
            "num_hosts_done": 0, "num_hosts_running": 0, "num_hosts_not_run": len(hosts), "hosts_not_run": hosts,
            "total_instances": 0, "total_errors": 0,
            "overall_status": f"{'ALL' if not hosts else f'0 of {len(hosts)}'} hosts done. 0 errors.", "log": {}}


async def list_audit_logs(request: Request):
    require_admin(request, "os_compute_api:os-instance-usage-audit-log:list")
    return json_response({"instance_usage_audit_logs": await _report(request, None)})


async def show_audit_log(request: Request, before: str):
    require_admin(request, "os_compute_api:os-instance-usage-audit-log:show")
    try:
        date = datetime.strptime(before, "%Y-%m-%d %H:%M:%S.%f" if "." in before else "%Y-%m-%d %H:%M:%S")
        last_completed_month(date)  # a date in year 1 has no month before it
    except ValueError:
        raise HTTPError(400, f"Invalid timestamp for date {before}") from None
    return json_response({"instance_usage_audit_log": await _report(request, date)})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-instance_usage_audit_log", list_audit_logs)
    router.add("GET", "/v2.1/os-instance_usage_audit_log/{before}", show_audit_log)
