"""``/v3/{project_id}/os-availability-zone``: the one zone volumes are made in (``nova``, as Cinder's default)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, json_response
from kilonova.volume import policy
from kilonova.volume.lookup import context
from kilonova.volume.volumes import AVAILABILITY_ZONE


async def index(request: Request, project_id: str):
    policy.check_read(context(request, project_id), "volume:availability_zone_list")
    return json_response({"availabilityZoneInfo": [{"zoneName": AVAILABILITY_ZONE,
                                                    "zoneState": {"available": True}}]})


def register(router: Router) -> None:
    router.add("GET", "/v3/{project_id}/os-availability-zone", index)
