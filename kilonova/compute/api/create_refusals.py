"""What a server create asks for that Kilonova cannot honour, refused with a 400 before anything is
written, in upstream's words where upstream has them; never silently dropped.

Every scheduler hint upstream's filters read has its filter here (``group``: the server-group filters;
``same_host``/``different_host``/``query``: SameHostFilter, DifferentHostFilter, JsonFilter;
``target_cell``/``different_cell``/``build_near_host_ip``+``cidr``: TargetCellFilter, DifferentCellFilter,
SimpleCIDRAffinityFilter); as upstream, a hint is ignored when the operator has not enabled its filter.
(Security groups are looked up in ``security_group_lookup``; block devices
are checked, and their volumes made, in ``boot_volumes``.)
"""
from __future__ import annotations

import re
from typing import Any

from kilonova.common.http import HTTPError
from kilonova.compute.api import validation

_UUID = re.compile(validation.UUID["pattern"])


def refuse_unsupported(server: dict[str, Any], hints: dict[str, Any]) -> None:
    refuse_personality(server)
    _refuse_networks(server.get("networks"))


def refuse_personality(server: dict[str, Any]) -> None:
    """Files to inject (``personality``, until 2.56; server create and rebuild): nothing would write them
    into the guest, so they are refused rather than dropped."""
    if server.get("personality"):
        raise HTTPError(400, "Personality (file injection) is not supported yet: the files would not reach "
                             "the server. Pass them in user_data instead (e.g. cloud-init's write_files).")


def _refuse_networks(networks: Any) -> None:
    if not isinstance(networks, list):
        return
    for item in networks:
        if not item.get("port") and not item.get("uuid"):
            raise HTTPError(400, "Bad network format: missing 'uuid'")
        if item.get("uuid") and not _UUID.match(item["uuid"]):   # before 2.37 the schema takes any string
            raise HTTPError(400, f"Bad networks format: network uuid is not in proper format ({item['uuid']})")
