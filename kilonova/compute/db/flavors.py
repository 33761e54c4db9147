"""The flavors table and its extra specs and project access lists (API database)."""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.common.prepared import prepare
from kilonova.compute.db.api_models import Flavor, FlavorExtraSpec, FlavorProject

# Upstream's default flavors: (name, flavorid, vcpus, memory_mb, root_gb).
DEFAULTS = [("m1.tiny", "1", 1, 512, 1), ("m1.small", "2", 1, 2048, 20), ("m1.medium", "3", 2, 4096, 40),
            ("m1.large", "4", 4, 8192, 80), ("m1.xlarge", "5", 8, 16384, 160)]

SORT_KEYS = ("created_at", "description", "disabled", "ephemeral_gb", "flavorid", "id", "is_public",
             "memory_mb", "name", "root_gb", "rxtx_factor", "swap", "updated_at", "vcpu_weight", "vcpus")


class FlavorExists(Conflict):
    pass


class FlavorIdExists(Conflict):
    pass


class MarkerNotFound(NotFound):
    pass


def ensure_defaults(session: Session) -> None:
    """Create upstream's m1.* flavors unless a flavor with that name or id already exists."""
    for name, flavorid, vcpus, memory_mb, root_gb in DEFAULTS:
        taken = session.scalar(sa.select(Flavor.id).where(sa.or_(Flavor.name == name, Flavor.flavorid == flavorid)))
        if taken is None:
            session.add(Flavor(name=name, flavorid=flavorid, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                               ephemeral_gb=0, swap=0, rxtx_factor=1.0, is_public=True, disabled=False))
    session.flush()


def get_by_flavorid(session: Session, flavorid: str, *, project_id: str | None = None,
                    is_admin: bool = True) -> Flavor:
    """The flavor with this flavorid; NotFound when absent or (for a non-admin) not accessible."""
    stmt = sa.select(Flavor).where(Flavor.flavorid == str(flavorid))
    if not is_admin:
        stmt = stmt.where(_public_or_member(project_id))
    flavor = session.scalar(stmt)
    if flavor is None:
        raise NotFound(f"Flavor {flavorid} could not be found.")
    return flavor


# Every create and every show of a flavor reads it: plain rows from statements built once (the columns
# ``snapshot`` and the API's view need), with ``get_by_flavorid``'s visibility rule; no ORM unit of work.
_FLAVORS = Flavor.__table__
_ROW = sa.select(*(_FLAVORS.c[name] for name in (
    "id", "flavorid", "name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb", "swap", "rxtx_factor",
    "vcpu_weight", "is_public", "disabled", "description"))).where(_FLAVORS.c.flavorid == sa.bindparam("flavorid"))
_PUBLIC_ROW = _ROW.where(_FLAVORS.c.is_public.is_(True))
_VISIBLE_ROW = _ROW.where(sa.or_(_FLAVORS.c.is_public.is_(True), sa.exists().where(
    FlavorProject.__table__.c.flavor_id == _FLAVORS.c.id,
    FlavorProject.__table__.c.project_id == sa.bindparam("project_id"))))
_EXTRA_SPECS = sa.select(FlavorExtraSpec.__table__.c.key, FlavorExtraSpec.__table__.c.value).where(
    FlavorExtraSpec.__table__.c.flavor_id == sa.bindparam("flavor_id"))
prepare(_ROW, _PUBLIC_ROW, _VISIBLE_ROW, _EXTRA_SPECS)


def visible_row(session: Session, flavorid: str, *, project_id: str | None = None,
                is_admin: bool = True) -> sa.Row | None:
    """The flavor's row (the columns above) when the caller may see it, as ``get_by_flavorid`` decides."""
    params = {"flavorid": str(flavorid)}
    if is_admin:
        statement = _ROW
    elif project_id is None:
        statement = _PUBLIC_ROW
    else:
        statement, params["project_id"] = _VISIBLE_ROW, project_id
    return session.execute(statement, params).first()


def extra_specs(session: Session, row_id: int) -> dict[str, str]:
    return dict(session.execute(_EXTRA_SPECS, {"flavor_id": row_id}).all())


def view_by_flavorid(session: Session, flavorid: str, *, project_id: str | None = None,
                     is_admin: bool = True) -> SimpleNamespace:
    """``get_by_flavorid`` read-only, for showing it: the row's columns and ``extra_specs`` (items with key and
    value) as attributes of plain objects."""
    row = visible_row(session, flavorid, project_id=project_id, is_admin=is_admin)
    if row is None:
        raise NotFound(f"Flavor {flavorid} could not be found.")
    specs = [SimpleNamespace(key=key, value=value) for key, value in extra_specs(session, row.id).items()]
    return SimpleNamespace(**row._asdict(), extra_specs=specs)


_ROW_ID = sa.select(Flavor.__table__.c.id).where(Flavor.__table__.c.flavorid == sa.bindparam("flavorid"))


def row_id(session: Session, flavorid: str) -> int:
    """The database id of the flavor with this flavorid (NotFound when absent): one column, no ORM object."""
    found = session.execute(_ROW_ID, {"flavorid": str(flavorid)}).scalar()
    if found is None:
        raise NotFound(f"Flavor {flavorid} could not be found.")
    return found


def _public_or_member(project_id: str | None):
    clause = Flavor.is_public.is_(True)
    if project_id is not None:
        clause = sa.or_(clause, Flavor.projects.any(FlavorProject.project_id == project_id))
    return clause


def snapshot(flavor: Flavor) -> dict[str, Any]:
    """What an instance records of its flavor."""
    return {"id": flavor.flavorid, "name": flavor.name, "vcpus": flavor.vcpus, "memory_mb": flavor.memory_mb,
            "root_gb": flavor.root_gb, "ephemeral_gb": flavor.ephemeral_gb, "swap": flavor.swap,
            "rxtx_factor": flavor.rxtx_factor, "vcpu_weight": flavor.vcpu_weight, "is_public": flavor.is_public,
            "disabled": flavor.disabled, "description": flavor.description,
            "extra_specs": {spec.key: spec.value for spec in flavor.extra_specs}}


def list_flavors(session: Session, *, is_public: bool | None = True, project_id: str | None = None,
                 disabled: bool | None = None, min_memory_mb: int | None = None, min_root_gb: int | None = None,
                 sort_key: str = "flavorid", sort_dir: str = "asc", limit: int | None = None,
                 marker: str | None = None) -> list[Flavor]:
    """Flavors matching Nova's filters; is_public True also shows private flavors shared with project_id."""
    stmt = sa.select(Flavor)
    if is_public is True:
        stmt = stmt.where(_public_or_member(project_id))
    elif is_public is False:
        stmt = stmt.where(Flavor.is_public.is_(False))
    if disabled is not None:
        stmt = stmt.where(Flavor.disabled.is_(disabled))
    if min_memory_mb is not None:
        stmt = stmt.where(Flavor.memory_mb >= min_memory_mb)
    if min_root_gb is not None:
        stmt = stmt.where(Flavor.root_gb >= min_root_gb)
    column = getattr(Flavor, sort_key)
    order = column.desc() if sort_dir == "desc" else column.asc()
    rows = list(session.scalars(stmt.order_by(order, Flavor.id.desc() if sort_dir == "desc" else Flavor.id.asc())))
    if marker is not None:
        index = next((i for i, row in enumerate(rows) if row.flavorid == marker), None)
        if index is None:
            raise MarkerNotFound(f"Marker {marker} could not be found.")
        rows = rows[index + 1:]
    return rows if limit is None else rows[:limit]


def create(session: Session, values: dict[str, Any]) -> Flavor:
    """A new flavor; flavorid defaults to a uuid. FlavorExists / FlavorIdExists on duplicates."""
    flavorid = values.get("flavorid") or str(uuidlib.uuid4())
    if session.scalar(sa.select(Flavor.id).where(Flavor.name == values["name"])) is not None:
        raise FlavorExists(f"Flavor with name {values['name']} already exists.")
    if session.scalar(sa.select(Flavor.id).where(Flavor.flavorid == flavorid)) is not None:
        raise FlavorIdExists(f"Flavor with ID {flavorid} already exists.")
    flavor = Flavor(**{**values, "flavorid": flavorid})
    session.add(flavor)
    try:
        session.flush()
    except IntegrityError:
        raise FlavorExists(f"Flavor with name {values['name']} already exists.") from None
    return flavor


def update_description(session: Session, flavorid: str, description: str | None) -> Flavor:
    flavor = get_by_flavorid(session, flavorid)
    flavor.description = description
    flavor.updated_at = datetime.utcnow().replace(microsecond=0)
    session.flush()
    return flavor


def delete(session: Session, flavorid: str) -> None:
    session.delete(get_by_flavorid(session, flavorid))
    session.flush()


# ---------------------------------------------------------------- extra specs

def get_extra_specs(session: Session, flavorid: str) -> dict[str, str | None]:
    return {spec.key: spec.value for spec in get_by_flavorid(session, flavorid).extra_specs}


def set_extra_specs(session: Session, flavorid: str, specs: dict[str, str]) -> dict[str, str | None]:
    flavor = get_by_flavorid(session, flavorid)
    existing = {spec.key: spec for spec in flavor.extra_specs}
    for key, value in specs.items():
        if key in existing:
            existing[key].value = value
        else:
            flavor.extra_specs.append(FlavorExtraSpec(key=key, value=value))
    session.flush()
    return {spec.key: spec.value for spec in flavor.extra_specs}


def delete_extra_spec(session: Session, flavorid: str, key: str) -> None:
    flavor = get_by_flavorid(session, flavorid)
    spec = next((s for s in flavor.extra_specs if s.key == key), None)
    if spec is None:
        raise NotFound(f"Flavor {flavorid} has no extra specs with key {key}.")
    flavor.extra_specs.remove(spec)
    session.flush()


# ---------------------------------------------------------------- project access

def access_list(session: Session, flavorid: str) -> list[str]:
    return sorted(p.project_id for p in get_by_flavorid(session, flavorid).projects)


def add_access(session: Session, flavorid: str, project_id: str) -> list[str]:
    flavor = get_by_flavorid(session, flavorid)
    if any(p.project_id == project_id for p in flavor.projects):
        raise Conflict(f"Flavor access already exists for flavor {flavorid} and project {project_id} combination.")
    flavor.projects.append(FlavorProject(project_id=project_id))
    session.flush()
    return sorted(p.project_id for p in flavor.projects)


def remove_access(session: Session, flavorid: str, project_id: str) -> list[str]:
    flavor = get_by_flavorid(session, flavorid)
    entry = next((p for p in flavor.projects if p.project_id == project_id), None)
    if entry is None:
        raise NotFound(f"Flavor access not found for {flavorid} / {project_id} combination.")
    flavor.projects.remove(entry)
    session.flush()
    return sorted(p.project_id for p in flavor.projects)
