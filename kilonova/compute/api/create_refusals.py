"""What a server create asks for that Kilonova cannot honour, refused with a 400 before anything is
written, in upstream's words where upstream has them; never silently dropped.

Kilonova takes no volumes at server create and has no server groups yet: a request that needs either is
told so rather than getting a server without it. (Security groups are looked up in ``security_group_lookup``.)
"""
from __future__ import annotations

import re
from typing import Any

from kilonova.common.http import HTTPError
from kilonova.compute.api import validation

# The hints upstream's own scheduler filters read; the scheduler here reads none of them. Other keys
# are left alone, as upstream leaves the hints of filters it does not run.
UPSTREAM_HINTS = ("same_host", "different_host", "query", "target_cell", "different_cell",
                  "build_near_host_ip", "cidr")
_UUID = re.compile(validation.UUID["pattern"])


def refuse_unsupported(server: dict[str, Any], hints: dict[str, Any]) -> None:
    _refuse_networks(server.get("networks"))
    _refuse_block_devices(server.get("block_device_mapping_v2") or [], server.get("imageRef"))
    _refuse_hints(hints)


def _refuse_networks(networks: Any) -> None:
    if not isinstance(networks, list):
        return
    for item in networks:
        if not item.get("port") and not item.get("uuid"):
            raise HTTPError(400, "Bad network format: missing 'uuid'")
        if item.get("uuid") and not _UUID.match(item["uuid"]):   # before 2.37 the schema takes any string
            raise HTTPError(400, f"Bad networks format: network uuid is not in proper format ({item['uuid']})")


def _refuse_block_devices(mappings: list[dict[str, Any]], image_ref: Any) -> None:
    image_id = str(image_ref or "").rstrip("/").rsplit("/", 1)[-1]
    for mapping in mappings:
        source, destination = mapping.get("source_type"), mapping.get("destination_type")
        if (source in ("volume", "snapshot") or destination == "volume"
                or mapping.get("volume_id") or mapping.get("snapshot_id")):
            raise HTTPError(400, "Block Device Mapping is Invalid: volumes at server create are not supported "
                                 "yet (a server can neither boot from a volume nor be created with one).")
        if source == "image" and (mapping.get("uuid") or mapping.get("image_id")) in (image_id, None):
            continue   # the server's own image as its local root disk: what imageRef gives anyway
        raise HTTPError(400, "Block Device Mapping is Invalid: only the server's image as its local root disk "
                             "is supported; extra local, ephemeral or swap disks are not supported yet.")


def _refuse_hints(hints: dict[str, Any]) -> None:
    if "group" in hints:
        raise HTTPError(400, "Server groups are not supported yet: the scheduler hint 'group' cannot be "
                             "honoured (no affinity or anti-affinity is applied).")
    for name in UPSTREAM_HINTS:
        if name in hints:
            raise HTTPError(400, f"The scheduler hint '{name}' is not supported yet.")
