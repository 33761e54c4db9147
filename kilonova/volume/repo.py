"""Reads and writes of the volume database, each given a session by ``Database.read`` / ``write``."""
from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.http import HTTPError
from kilonova.volume.errors import type_not_found, volume_not_found
from kilonova.volume.volume_reads import volume_row
from kilonova.volume.models import (QuotaLimit, Snapshot, SnapshotMetadata, Volume, VolumeAttachment,
                                    VolumeGlanceMetadata, VolumeMetadata, VolumeType, VolumeTypeExtraSpec, utcnow)

DEFAULT_TYPE_NAME = "__DEFAULT__"
DEFAULT_TYPE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/volume-types/__DEFAULT__"))


def _time(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value is not None else None


def type_dict(vtype: VolumeType) -> dict[str, Any]:
    return {"id": vtype.id, "name": vtype.name, "description": vtype.description, "is_public": vtype.is_public,
            "os-volume-type-access:is_public": vtype.is_public, "qos_specs_id": None,
            "extra_specs": {spec.key: spec.value for spec in vtype.extra_specs}}


def volume_dict(volume: Volume) -> dict[str, Any]:
    return {"id": volume.id, "project_id": volume.project_id, "user_id": volume.user_id, "name": volume.name,
            "description": volume.description, "size": volume.size, "status": volume.status,
            "availability_zone": volume.availability_zone, "bootable": volume.bootable,
            "volume_type": volume.volume_type.name, "volume_type_id": volume.volume_type_id,
            "created_at": _time(volume.created_at), "updated_at": _time(volume.updated_at),
            "snapshot_id": volume.snapshot_id, "source_volid": volume.source_volid,
            "metadata": {item.key: item.value for item in volume.metadata_items},
            "extend_new_size": volume.extend_new_size,
            "multiattach": volume.multiattach, "attach_status": volume.attach_status, "readonly": volume.readonly,
            "attachments": [attachment_dict(a) for a in volume.attachments],
            "image_metadata": {item.key: item.value for item in volume.image_items}}


def attachment_dict(attachment: VolumeAttachment) -> dict[str, Any]:
    return {"id": attachment.id, "volume_id": attachment.volume_id, "instance_uuid": attachment.instance_uuid,
            "attach_status": attachment.attach_status, "attach_mode": attachment.attach_mode,
            "attached_host": attachment.attached_host, "mountpoint": attachment.mountpoint,
            "connector": json.loads(attachment.connector) if attachment.connector else None,
            "connection_info": json.loads(attachment.connection_info) if attachment.connection_info else None,
            "attach_time": _time(attachment.attach_time), "detach_time": _time(attachment.detach_time),
            "created_at": _time(attachment.created_at), "updated_at": _time(attachment.updated_at)}


# --- volume types

def ensure_default_type(session: Session) -> None:
    if session.get(VolumeType, DEFAULT_TYPE_ID) is None:
        session.add(VolumeType(id=DEFAULT_TYPE_ID, name=DEFAULT_TYPE_NAME, description="Default Volume Type"))


def is_multiattach(vtype: VolumeType) -> bool:
    """A type whose volumes may be attached to several servers: extra spec ``multiattach="<is> True"``."""
    return any(spec.key == "multiattach" and spec.value.strip().lower() == "<is> true" for spec in vtype.extra_specs)


def find_type(session: Session, name_or_id: str) -> VolumeType:
    vtype = session.get(VolumeType, name_or_id) or session.scalar(
        sa.select(VolumeType).where(VolumeType.name == name_or_id))
    if vtype is None:
        raise type_not_found(name_or_id)
    return vtype


def get_type(session: Session, type_id: str) -> dict[str, Any]:
    return type_dict(find_type(session, type_id))


def list_types(session: Session, public_only: bool) -> list[dict[str, Any]]:
    query = sa.select(VolumeType).order_by(VolumeType.created_at, VolumeType.name)
    if public_only:
        query = query.where(VolumeType.is_public.is_(True))
    return [type_dict(vtype) for vtype in session.scalars(query)]


def create_type(session: Session, values: dict[str, Any], specs: dict[str, str]) -> dict[str, Any]:
    if session.scalar(sa.select(VolumeType).where(VolumeType.name == values["name"])) is not None:
        raise HTTPError(409, f"Volume Type {values['name']} already exists.")
    vtype = VolumeType(id=str(uuid.uuid4()), **values)
    vtype.extra_specs = [VolumeTypeExtraSpec(key=k, value=v) for k, v in specs.items()]
    session.add(vtype)
    session.flush()
    return type_dict(vtype)


def update_type(session: Session, type_id: str, values: dict[str, Any]) -> dict[str, Any]:
    vtype = find_type(session, type_id)
    if "name" in values and values["name"] != vtype.name:
        if vtype.id == DEFAULT_TYPE_ID:
            raise HTTPError(400, "The default volume type can not be renamed.")
        if session.scalar(sa.select(VolumeType).where(VolumeType.name == values["name"])) is not None:
            raise HTTPError(409, f"Volume Type {values['name']} already exists.")
    for key, value in values.items():
        setattr(vtype, key, value)
    vtype.updated_at = utcnow()
    session.flush()
    return type_dict(vtype)


def delete_type(session: Session, type_id: str) -> None:
    vtype = find_type(session, type_id)
    if vtype.id == DEFAULT_TYPE_ID:
        raise HTTPError(400, "Default volume type can not be deleted.")
    if session.scalar(sa.select(sa.func.count()).select_from(Volume).where(Volume.volume_type_id == vtype.id)):
        raise HTTPError(400, "Target volume type is still in use.")
    session.delete(vtype)


def set_specs(session: Session, type_id: str, specs: dict[str, str]) -> dict[str, str]:
    vtype = find_type(session, type_id)
    _merge(vtype.extra_specs, specs, VolumeTypeExtraSpec, replace=False)
    session.flush()
    return {spec.key: spec.value for spec in vtype.extra_specs}


def delete_spec(session: Session, type_id: str, key: str) -> None:
    vtype = find_type(session, type_id)
    _remove(vtype.extra_specs, key, f"Volume Type {vtype.id} has no extra specs with key {key}.")


def _merge(rows: list, values: dict[str, str], row_class: type, replace: bool) -> None:
    """Key/value child rows (extra specs, metadata) set to ``values``; with ``replace`` others go."""
    current = {row.key: row for row in rows}
    if replace:
        for key, row in current.items():
            if key not in values:
                rows.remove(row)
    for key, value in values.items():
        if key in current:
            current[key].value = value
        else:
            rows.append(row_class(key=key, value=value))


def _remove(rows: list, key: str, missing: str) -> None:
    found = [row for row in rows if row.key == key]
    if not found:
        raise HTTPError(404, missing)
    rows.remove(found[0])


# --- volumes

def _volume(session: Session, volume_id: str) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise volume_not_found(volume_id)
    return volume


def get_volume(session: Session, volume_id: str) -> dict[str, Any]:
    volume = volume_row(session, volume_id)   # plain rows, not the ORM: the service's hottest read
    if volume is None:
        raise volume_not_found(volume_id)
    return volume_dict(volume)


def usage(session: Session, project_id: str) -> dict[str, int]:
    count, gigabytes = session.execute(
        sa.select(sa.func.count(Volume.id), sa.func.coalesce(sa.func.sum(Volume.size), 0))
        .where(Volume.project_id == project_id)).one()
    snapshots, snapshot_gigabytes = session.execute(
        sa.select(sa.func.count(Snapshot.id), sa.func.coalesce(sa.func.sum(Snapshot.size), 0))
        .where(Snapshot.project_id == project_id)).one()
    # As Cinder's, snapshots count against the gigabytes quota too.
    return {"volumes": count, "gigabytes": int(gigabytes) + int(snapshot_gigabytes), "snapshots": snapshots,
            "backups": 0, "backup_gigabytes": 0, "groups": 0}


def provisioned_gb(session: Session) -> int:
    """What every volume and snapshot of the backend was given (its files are sparse: not what they use)."""
    volumes = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Volume.size), 0)))
    snapshots = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Snapshot.size), 0)))
    return int(volumes) + int(snapshots)


def quota_overrides(session: Session, project_id: str) -> dict[str, int]:
    rows = session.scalars(sa.select(QuotaLimit).where(QuotaLimit.project_id == project_id))
    return {row.resource: row.hard_limit for row in rows}


def set_quotas(session: Session, project_id: str, values: dict[str, int]) -> None:
    existing = {row.resource: row for row in
                session.scalars(sa.select(QuotaLimit).where(QuotaLimit.project_id == project_id))}
    for resource, limit in values.items():
        if resource in existing:
            existing[resource].hard_limit = limit
        else:
            session.add(QuotaLimit(project_id=project_id, resource=resource, hard_limit=limit))


def reset_quotas(session: Session, project_id: str) -> None:
    session.execute(sa.delete(QuotaLimit).where(QuotaLimit.project_id == project_id))


def check_quota(session: Session, project_id: str, limits: dict[str, int], volumes: int, gigabytes: int,
                volume_size: int) -> None:
    """413 as Cinder's when ``volumes`` more volumes of ``gigabytes`` more GiB, or one volume of
    ``volume_size``, would pass a limit."""
    used = usage(session, project_id)
    per_volume = limits.get("per_volume_gigabytes", -1)
    if 0 <= per_volume < volume_size:
        raise HTTPError(413, f"Requested volume size {volume_size}G is larger than maximum allowed limit "
                             f"{per_volume}G.")
    if gigabytes and 0 <= limits["gigabytes"] < used["gigabytes"] + gigabytes:
        raise HTTPError(413, f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested "
                             f"{gigabytes}G, quota is {limits['gigabytes']}G and {used['gigabytes']}G has been "
                             f"consumed.")
    if volumes and 0 <= limits["volumes"] < used["volumes"] + volumes:
        raise HTTPError(413, f"Maximum number of volumes allowed ({limits['volumes']}) exceeded for quota "
                             f"'volumes'.")


def _source_size(session: Session, values: dict[str, Any], admin: bool) -> int | None:
    """The size of the snapshot or volume a new volume is made from (None: made empty); 404 when the
    caller cannot see it, 400 when it is not ready to be copied."""
    if values.get("snapshot_id"):
        snapshot = session.get(Snapshot, values["snapshot_id"])
        if snapshot is None or (not admin and snapshot.project_id != values["project_id"]):
            raise HTTPError(404, f"Snapshot {values['snapshot_id']} could not be found.")
        if snapshot.status != "available":
            raise HTTPError(400, f"Invalid snapshot: Originating snapshot status must be one of 'available' "
                                 f"values, not {snapshot.status}.")
        return snapshot.size
    if values.get("source_volid"):
        source = session.get(Volume, values["source_volid"])
        if source is None or (not admin and source.project_id != values["project_id"]):
            raise volume_not_found(values["source_volid"])
        if source.status not in ("available", "in-use"):
            raise HTTPError(400, f"Invalid volume: Source volume status must be available or in-use, not "
                                 f"{source.status}.")
        return source.size
    return None


def create_volume(session: Session, values: dict[str, Any], metadata: dict[str, str], type_ref: str | None,
                  limits: dict[str, int], admin: bool = False,
                  image_metadata: dict[str, str] | None = None) -> dict[str, Any]:
    vtype = find_type(session, type_ref or DEFAULT_TYPE_ID)
    source_size = _source_size(session, values, admin)
    if source_size is not None:
        if values.get("size") is None:
            values = {**values, "size": source_size}
        elif values["size"] < source_size:
            what = "the snapshot size" if values.get("snapshot_id") else "original volume size"
            raise HTTPError(400, f"Invalid input received: Volume size '{values['size']}'GB cannot be smaller than "
                                 f"{what} {source_size}GB. They must be >= original "
                                 f"{'snapshot' if values.get('snapshot_id') else 'volume'} size.")
    check_quota(session, values["project_id"], limits, 1, values["size"], values["size"])
    values = {**values, "multiattach": values.get("multiattach", False) or is_multiattach(vtype)}
    volume = Volume(id=str(uuid.uuid4()), volume_type_id=vtype.id, status="creating", **values)
    volume.metadata_items = [VolumeMetadata(key=k, value=v) for k, v in metadata.items()]
    volume.image_items = [VolumeGlanceMetadata(key=k, value=v) for k, v in (image_metadata or {}).items()]
    session.add(volume)
    session.flush()
    session.refresh(volume)
    return volume_dict(volume)


def set_metadata(session: Session, volume_id: str, metadata: dict[str, str], replace: bool) -> dict[str, str]:
    volume = _volume(session, volume_id)
    _merge(volume.metadata_items, metadata, VolumeMetadata, replace)
    volume.updated_at = utcnow()
    session.flush()
    return {item.key: item.value for item in volume.metadata_items}


def set_image_metadata(session: Session, volume_id: str, metadata: dict[str, str]) -> dict[str, str]:
    volume = _volume(session, volume_id)
    _merge(volume.image_items, metadata, VolumeGlanceMetadata, replace=False)
    volume.updated_at = utcnow()
    session.flush()
    return {item.key: item.value for item in volume.image_items}


def delete_image_metadata(session: Session, volume_id: str, key: str) -> None:
    volume = _volume(session, volume_id)   # held: the collection's parent must outlive the change
    _remove(volume.image_items, key, f"Glance metadata for volume/snapshot {volume_id} cannot be found.")


def delete_metadata(session: Session, volume_id: str, key: str) -> None:
    volume = _volume(session, volume_id)   # held: the collection's parent must outlive the change
    _remove(volume.metadata_items, key, f"Volume {volume_id} has no metadata with key {key}.")


def snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    return {"id": snapshot.id, "project_id": snapshot.project_id, "user_id": snapshot.user_id,
            "volume_id": snapshot.volume_id, "name": snapshot.name, "description": snapshot.description,
            "size": snapshot.size, "status": snapshot.status, "created_at": _time(snapshot.created_at),
            "updated_at": _time(snapshot.updated_at),
            "metadata": {item.key: item.value for item in snapshot.metadata_items}}


def create_snapshot(session: Session, values: dict[str, Any], limits: dict[str, int],
                    allowed: tuple[str, ...], metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """A snapshot of a volume in one of ``allowed``, within the snapshots and gigabytes quotas."""
    volume = _volume(session, values["volume_id"])
    if volume.status not in allowed:
        raise HTTPError(400, f"Invalid volume: Volume {volume.id} status must be available, but current status "
                             f"is: {volume.status}.")
    used = usage(session, values["project_id"])
    if 0 <= limits["snapshots"] < used["snapshots"] + 1:
        raise HTTPError(413, f"Maximum number of snapshots allowed ({limits['snapshots']}) exceeded")
    if 0 <= limits["gigabytes"] < used["gigabytes"] + volume.size:
        raise HTTPError(413, f"Requested volume or snapshot exceeds allowed gigabytes quota. Requested "
                             f"{volume.size}G, quota is {limits['gigabytes']}G and {used['gigabytes']}G has been "
                             f"consumed.")
    snapshot = Snapshot(id=str(uuid.uuid4()), size=volume.size, status="creating", **values)
    snapshot.metadata_items = [SnapshotMetadata(key=k, value=v) for k, v in (metadata or {}).items()]
    session.add(snapshot)
    session.flush()
    return snapshot_dict(snapshot)


def set_snapshot_metadata(session: Session, snapshot_id: str, metadata: dict[str, str],
                          replace: bool) -> dict[str, str]:
    snapshot = _snapshot(session, snapshot_id)
    _merge(snapshot.metadata_items, metadata, SnapshotMetadata, replace)
    snapshot.updated_at = utcnow()
    session.flush()
    return {item.key: item.value for item in snapshot.metadata_items}


def delete_snapshot_metadata(session: Session, snapshot_id: str, key: str) -> None:
    snapshot = _snapshot(session, snapshot_id)   # held: the collection's parent must outlive the change
    _remove(snapshot.metadata_items, key, f"Snapshot {snapshot_id} has no metadata with key {key}.")


def _snapshot(session: Session, snapshot_id: str) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise HTTPError(404, f"Snapshot {snapshot_id} could not be found.")
    return snapshot


def get_snapshot(session: Session, snapshot_id: str) -> dict[str, Any]:
    return snapshot_dict(_snapshot(session, snapshot_id))


# --- what volumes and snapshots share: listing, status moves, updates, removal

_DICTS = {Volume: volume_dict, Snapshot: snapshot_dict}


def _listing(model: type, project_id: str | None) -> list[dict[str, Any]]:
    def read(session: Session) -> list[dict[str, Any]]:
        query = sa.select(model)
        if project_id is not None:
            query = query.where(model.project_id == project_id)
        return [_DICTS[model](row) for row in session.scalars(query)]
    return read


def list_volumes(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    return _listing(Volume, project_id)(session)


def list_snapshots(session: Session, project_id: str | None) -> list[dict[str, Any]]:
    return _listing(Snapshot, project_id)(session)


def _move(session: Session, model: type, row_id: str, status: str, expected: tuple[str, ...] | None,
          values: dict[str, Any]) -> dict[str, Any] | None:
    """Move a row to ``status`` (only from one of ``expected``); None when it is gone or elsewhere."""
    row = session.get(model, row_id)
    if row is None or (expected is not None and row.status not in expected):
        return None
    row.status = status
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    return _DICTS[model](row)


def set_status(session: Session, volume_id: str, status: str, expected: tuple[str, ...] | None = None,
               **values: Any) -> dict[str, Any] | None:
    return _move(session, Volume, volume_id, status, expected, values)


def set_snapshot_status(session: Session, snapshot_id: str, status: str,
                        expected: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    return _move(session, Snapshot, snapshot_id, status, expected, {})


def _update(row, to_dict, values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    return to_dict(row)


def retype(session: Session, volume_id: str, type_ref: str) -> None:
    """The volume's type changed in place (one backend: nothing to migrate), as Cinder refuses it: only an
    available or in-use volume, to another type, and no multiattach change while attached."""
    volume = _volume(session, volume_id)
    vtype = find_type(session, type_ref)
    if volume.status not in ("available", "in-use"):
        raise HTTPError(400, f"Invalid volume: Retype needs volume to be in available or in-use state, not be "
                             f"part of an active migration or a consistency group, requested type has to be "
                             f"different that the one from the volume, and for in-use volumes front-end qos "
                             f"specs cannot change. (current status: {volume.status})")
    if vtype.id == volume.volume_type_id:
        raise HTTPError(400, f"Invalid input received: New volume type must be different from the current one "
                             f"({vtype.name}).")
    multiattach = is_multiattach(vtype)
    if volume.status == "in-use" and multiattach != volume.multiattach:
        raise HTTPError(400, "Invalid volume: Retype is not allowed to change multiattach of an in-use volume: "
                             "detach it first.")
    volume.volume_type_id, volume.multiattach, volume.updated_at = vtype.id, multiattach, utcnow()


def finish_image(session: Session, volume_id: str) -> dict[str, Any] | None:
    """An image written into the volume: bootable, and ``available`` unless reserved meanwhile (Cinder lets a
    ``downloading`` volume be reserved for a boot from volume). None when the volume is gone."""
    volume = session.get(Volume, volume_id)
    if volume is None or volume.status == "deleting":
        return None
    volume.bootable = True
    if volume.status == "downloading":
        volume.status = "available"
    volume.updated_at = utcnow()
    session.flush()
    return volume_dict(volume)


def update_volume(session: Session, volume_id: str, values: dict[str, Any]) -> dict[str, Any]:
    result = _update(_volume(session, volume_id), volume_dict, values)
    session.flush()
    return result


def update_snapshot(session: Session, snapshot_id: str, values: dict[str, Any]) -> dict[str, Any]:
    result = _update(_snapshot(session, snapshot_id), snapshot_dict, values)
    session.flush()
    return result


def delete_volume(session: Session, volume_id: str) -> None:
    """The volume's row, with what is left of its attachments (a forced delete leaves reservations)."""
    session.execute(sa.delete(VolumeAttachment).where(VolumeAttachment.volume_id == volume_id))
    _delete(session, Volume, volume_id)


def begin_delete(session: Session, volume_id: str, deletable: tuple[str, ...] | None,
                 cascade: bool) -> list[str] | None:
    """The volume (and with ``cascade`` its snapshots) ``deleting``, as Cinder allows it: never while
    attached, with snapshots only with ``cascade`` (and only ``available`` or ``error`` ones), in one of
    ``deletable`` (None: any status, a forced delete). Answers the snapshots to remove, None when refused."""
    volume = _volume(session, volume_id)
    if volume.attach_status == "attached" or any(a.attach_status == "attached" for a in volume.attachments):
        return None
    if deletable is not None and volume.status not in deletable:
        return None
    snapshots = list(session.scalars(sa.select(Snapshot).where(Snapshot.volume_id == volume_id)))
    if snapshots and (not cascade or any(s.status not in ("available", "error") for s in snapshots)):
        return None
    for snapshot in snapshots:
        snapshot.status, snapshot.updated_at = "deleting", utcnow()
    volume.status, volume.updated_at = "deleting", utcnow()
    session.flush()
    return [snapshot.id for snapshot in snapshots]


def delete_snapshot(session: Session, snapshot_id: str) -> None:
    _delete(session, Snapshot, snapshot_id)


def _delete(session: Session, model: type, row_id: str) -> None:
    row = session.get(model, row_id)
    if row is not None:
        session.delete(row)


def volumes_in(session: Session, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return [volume_dict(v) for v in session.scalars(sa.select(Volume).where(Volume.status.in_(statuses)))]


def snapshots_in(session: Session, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return [snapshot_dict(s) for s in session.scalars(sa.select(Snapshot).where(Snapshot.status.in_(statuses)))]
