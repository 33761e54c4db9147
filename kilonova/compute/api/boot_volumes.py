"""A server create's volume block devices (``block_device_mapping_v2`` with ``destination_type`` volume).

``parse`` checks the mappings as upstream's block device validation does (the boot sequence, a volume
size for a volume made from an image or blank, the source a volume mapping may have) and says which are
volumes; the server's own image as its local root disk stays what ``imageRef`` gives. ``prepare`` then,
with the caller's token so that every volume is the caller's project's: an existing volume is looked up
and reserved for the server (a Cinder attachment: one in use is refused there); a volume from an image, a
snapshot or blank is created in the volume service (``creating``: the server's host waits for it and
reserves it). What it made is given back if the create goes no further (``give_back``).

The mappings travel to the conductor in the request spec (``block_devices``, by server) and become the
server's rows of ``block_device_mapping`` when it is written into its cell; the host connects them before
the guest starts (``agent/operations/volumes.py``). A server whose boot disk (``boot_index`` 0) is a volume
claims no local root disk (``is_bfv``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kilonova.common.http import HTTPError
from kilonova.compute import volume_api
from kilonova.compute.api.volume_backed_snapshot import image_mappings
from kilonova.compute.cleanup import release_prepared_volumes

INVALID = "Block Device Mapping is Invalid: "
BOOT_SEQUENCE = INVALID + "Boot sequence for the instance and image/block device mapping combination is not valid."


@dataclass
class Plan:
    volumes: list[dict[str, Any]] = field(default_factory=list)  # the volume mappings, as asked
    root: dict[str, Any] | None = None  # the boot volume's mapping (boot_index 0), when the root is a volume

    @property
    def image_id(self) -> str | None:
        """The image the server's boot volume is made from (its properties are the server's image's)."""
        return self.root["uuid"] if self.root and self.root["source_type"] == "image" else None


def with_image_mappings(server: dict[str, Any], image: dict[str, Any] | None) -> dict[str, Any]:
    """The create with the block device mapping its image carries (the image of a volume-backed server's
    snapshot: volumes from snapshots), the user's own mappings taking the devices they name, as upstream."""
    image_bdms = image_mappings(image) if image else []
    if not image_bdms:
        return server
    own = list(server.get("block_device_mapping_v2") or [])
    named = {m.get("device_name") for m in own if m.get("device_name")}
    kept = [m for m in image_bdms if m.get("device_name") not in named]
    return {**server, "block_device_mapping_v2": kept + own}


def _boot_index(mapping: dict) -> int | None:
    value = mapping.get("boot_index")
    return None if value in (None, "") else int(value)


def _size(mapping: dict) -> int | None:
    value = mapping.get("volume_size")
    return None if value in (None, "") else int(value)


def _source_id(mapping: dict) -> str | None:
    return mapping.get("uuid") or mapping.get("volume_id") or mapping.get("snapshot_id") or mapping.get("image_id")


def parse(server: dict[str, Any], image_ref: str) -> Plan:
    """The volume mappings of the create (400s as upstream's); local ones other than the image root are refused."""
    plan = Plan()
    mappings = server.get("block_device_mapping_v2") or []
    indexes = sorted(i for i in (_boot_index(m) for m in mappings) if i is not None and i >= 0)
    if indexes != list(range(len(indexes))):
        raise HTTPError(400, BOOT_SEQUENCE)
    for mapping in mappings:
        source = mapping.get("source_type") or ("volume" if mapping.get("volume_id") else
                                                "snapshot" if mapping.get("snapshot_id") else None)
        destination = mapping.get("destination_type") or ("volume" if source in ("volume", "snapshot") else "local")
        if destination == "local":
            if source == "image" and _boot_index(mapping) in (0, None) and _source_id(mapping) in (image_ref, None):
                continue  # the server's image as its local root disk: what imageRef gives anyway
            raise HTTPError(400, INVALID + "only the server's image as its local root disk is supported; extra "
                                           "local, ephemeral or swap disks are not supported yet.")
        if source is None:
            raise HTTPError(400, INVALID + "a volume mapping needs a source_type.")
        if source != "blank" and not _source_id(mapping):
            raise HTTPError(400, INVALID + f"a mapping of a {source} needs its uuid.")
        size = _size(mapping)
        if source in ("image", "blank") and not size:
            raise HTTPError(400, f"Images with destination_type 'volume' need to have a non-zero size specified"
                            if source == "image" else INVALID + "a blank volume needs a volume_size.")
        entry = {"source_type": source, "destination_type": "volume", "uuid": _source_id(mapping),
                 "volume_size": size, "boot_index": _boot_index(mapping),
                 "delete_on_termination": str(mapping.get("delete_on_termination", False)).lower() in
                 ("true", "1", "yes", "on", "t", "y"),
                 "device_name": mapping.get("device_name"), "tag": mapping.get("tag"),
                 "volume_type": mapping.get("volume_type")}
        plan.volumes.append(entry)
        if entry["boot_index"] == 0:
            plan.root = entry
    if not image_ref and plan.root is None:
        raise HTTPError(400, BOOT_SEQUENCE)
    return plan


def _device_names(plan: Plan, extra_local_disks: int) -> list[str | None]:
    """``/dev/vda`` for the boot volume, the others after the root and the server's other local disks
    (ephemeral, swap, config drive), in order."""
    names, taken = [], 1 + extra_local_disks
    for entry in plan.volumes:
        if entry is plan.root:
            names.append("/dev/vda")
        else:
            names.append(f"/dev/vd{chr(ord('a') + taken)}")
            taken += 1
    return names


async def root_image(volumes: volume_api.VolumeAPI, plan: Plan) -> dict[str, Any]:
    """The image properties of a server booted from an existing volume: the volume's image metadata."""
    volume = await _get(volumes, plan.root["uuid"])
    meta = volume.get("volume_image_metadata") or {}
    return {"id": "", "name": meta.get("image_name"), "min_ram": int(meta.get("min_ram") or 0),
            "min_disk": int(meta.get("min_disk") or 0), "size": int(meta.get("size") or 0),
            "disk_format": meta.get("disk_format"), "container_format": meta.get("container_format"),
            **{k: v for k, v in meta.items() if k.startswith(("hw_", "img_", "os_"))}}


async def _get(volumes: volume_api.VolumeAPI, volume_id: str) -> dict[str, Any]:
    try:
        return await volumes.get(volume_id)
    except volume_api.VolumeNotFound:
        raise HTTPError(400, INVALID + f"failed to get volume {volume_id}.") from None
    except volume_api.VolumeError as exc:
        raise HTTPError(400, INVALID + exc.message) from None


async def check(volumes: volume_api.VolumeAPI, plan: Plan, count: int) -> None:
    """What can be checked before anything is made: the volumes named exist, are available and go to one server."""
    for entry in plan.volumes:
        if entry["source_type"] != "volume":
            continue
        if count > 1:
            raise HTTPError(400, "Unable to launch multiple instances with a single configured volume "
                                 f"({entry['uuid']}).")
        volume = await _get(volumes, entry["uuid"])
        if volume.get("status") != "available":
            raise HTTPError(400, f"Invalid volume: volume '{entry['uuid']}' status must be 'available'. "
                                 f"Currently in '{volume.get('status')}'")


async def prepare(volumes: volume_api.VolumeAPI, plan: Plan, instance: dict[str, Any],
                  extra_local_disks: int) -> list[dict[str, Any]]:
    """The server's mappings, its volumes reserved or created; what was done is given back on a failure."""
    made: list[dict[str, Any]] = []
    try:
        for entry, device in zip(plan.volumes, _device_names(plan, extra_local_disks)):
            made.append(await _one(volumes, entry, instance, device))
    except BaseException:
        await give_back(volumes, made)
        raise
    return made


async def _one(volumes: volume_api.VolumeAPI, entry: dict, instance: dict, device: str) -> dict[str, Any]:
    row = {"source_type": entry["source_type"], "destination_type": "volume", "boot_index": entry["boot_index"],
           "volume_size": entry["volume_size"], "delete_on_termination": entry["delete_on_termination"],
           "device_name": device, "tag": entry["tag"], "status": "attaching"}
    try:
        if entry["source_type"] == "volume":
            attachment = await volumes.attachment_create(entry["uuid"], instance["uuid"])
            return {**row, "volume_id": entry["uuid"], "attachment_id": attachment["id"]}
        name = f"{instance.get('display_name') or instance['uuid']}-{'boot' if entry['boot_index'] == 0 else 'volume'}"
        volume = await volumes.create(entry["volume_size"] or 0, name=name,
                                      image_id=entry["uuid"] if entry["source_type"] == "image" else None,
                                      snapshot_id=entry["uuid"] if entry["source_type"] == "snapshot" else None,
                                      availability_zone=None, volume_type=entry.get("volume_type"))
    except volume_api.VolumeError as exc:
        raise HTTPError(400 if exc.status < 500 else 503, INVALID + exc.message) from None
    key = {"image": "image_id", "snapshot": "snapshot_id"}.get(entry["source_type"])
    return {**row, "volume_id": volume["id"], "volume_size": volume.get("size") or entry["volume_size"],
            "created": True, **({key: entry["uuid"]} if key else {})}


async def give_back(volumes, rows: list[dict[str, Any]]) -> None:
    """Undo ``prepare``: reservations deleted, volumes made for the server deleted."""
    await release_prepared_volumes(volumes, "", rows)
