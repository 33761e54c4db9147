"""The regions, services and endpoints tables."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.db import Conflict, NotFound
from kilonova.identity.models import CatalogService, Endpoint, Region
from kilonova.identity.store import new_id

# -- regions -----------------------------------------------------------------------------------


def get_region(session: Session, region_id: str) -> Region:
    region = session.get(Region, region_id)
    if region is None:
        raise NotFound(f"Could not find region: {region_id}.")
    return region


def list_regions(session: Session, parent_region_id: str | None = None) -> list[Region]:
    query = sa.select(Region).order_by(Region.id)
    if parent_region_id is not None:
        query = query.where(Region.parent_region_id == parent_region_id)
    return list(session.scalars(query))


def create_region(session: Session, values: dict[str, Any]) -> Region:
    region_id = values.get("id") or new_id()
    if session.get(Region, region_id) is not None:
        raise Conflict(f"Conflict occurred attempting to store region - Duplicate ID, {region_id}.")
    if values.get("parent_region_id"):
        get_region(session, values["parent_region_id"])
    region = Region(id=region_id, description=values.get("description", ""),
                    parent_region_id=values.get("parent_region_id"))
    session.add(region)
    session.flush()
    return region


def update_region(session: Session, region_id: str, values: dict[str, Any]) -> Region:
    region = get_region(session, region_id)
    for key in ("description", "parent_region_id"):
        if key in values:
            setattr(region, key, values[key])
    session.flush()
    return region


def delete_region(session: Session, region_id: str) -> None:
    region = get_region(session, region_id)
    if session.scalar(sa.select(sa.func.count()).select_from(Region).where(Region.parent_region_id == region_id)):
        raise Conflict(f"Cannot delete region {region_id}: it has child regions.")
    session.execute(sa.update(Endpoint).where(Endpoint.region_id == region_id).values(region_id=None))
    session.delete(region)


# -- services ----------------------------------------------------------------------------------

def get_service(session: Session, service_id: str) -> CatalogService:
    service = session.get(CatalogService, service_id)
    if service is None:
        raise NotFound(f"Could not find service: {service_id}.")
    return service


def list_services(session: Session, type: str | None = None, name: str | None = None) -> list[CatalogService]:
    query = sa.select(CatalogService).order_by(CatalogService.type, CatalogService.id)
    if type is not None:
        query = query.where(CatalogService.type == type)
    if name is not None:
        query = query.where(CatalogService.name == name)
    return list(session.scalars(query))


def create_service(session: Session, values: dict[str, Any]) -> CatalogService:
    service = CatalogService(id=new_id(), type=values["type"], name=values.get("name"),
                             description=values.get("description"), enabled=values.get("enabled", True))
    session.add(service)
    session.flush()
    return service


def update_service(session: Session, service_id: str, values: dict[str, Any]) -> CatalogService:
    service = get_service(session, service_id)
    for key in ("type", "name", "description", "enabled"):
        if key in values:
            setattr(service, key, values[key])
    session.flush()
    return service


def delete_service(session: Session, service_id: str) -> None:
    service = get_service(session, service_id)
    session.execute(sa.delete(Endpoint).where(Endpoint.service_id == service_id))
    session.delete(service)


# -- endpoints ---------------------------------------------------------------------------------

def get_endpoint(session: Session, endpoint_id: str) -> Endpoint:
    endpoint = session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"Could not find endpoint: {endpoint_id}.")
    return endpoint


def list_endpoints(session: Session, service_id: str | None = None, interface: str | None = None,
                   region_id: str | None = None) -> list[Endpoint]:
    query = sa.select(Endpoint).order_by(Endpoint.service_id, Endpoint.interface, Endpoint.id)
    if service_id is not None:
        query = query.where(Endpoint.service_id == service_id)
    if interface is not None:
        query = query.where(Endpoint.interface == interface)
    if region_id is not None:
        query = query.where(Endpoint.region_id == region_id)
    return list(session.scalars(query))


def create_endpoint(session: Session, values: dict[str, Any]) -> Endpoint:
    get_service(session, values["service_id"])
    region_id = values.get("region_id") or values.get("region")
    if region_id:
        get_region(session, region_id)
    endpoint = Endpoint(id=new_id(), service_id=values["service_id"], interface=values["interface"],
                        region_id=region_id, url=values["url"], enabled=values.get("enabled", True))
    session.add(endpoint)
    session.flush()
    return endpoint


def update_endpoint(session: Session, endpoint_id: str, values: dict[str, Any]) -> Endpoint:
    endpoint = get_endpoint(session, endpoint_id)
    if "service_id" in values:
        get_service(session, values["service_id"])
    if values.get("region_id"):
        get_region(session, values["region_id"])
    for key in ("service_id", "interface", "region_id", "url", "enabled"):
        if key in values:
            setattr(endpoint, key, values[key])
    session.flush()
    return endpoint


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    session.delete(get_endpoint(session, endpoint_id))


def ensure_endpoint(session: Session, service_type: str, service_name: str, region_id: str,
                    interface: str, url: str) -> None:
    """Create or re-point one catalog entry (bootstrap; URLs may change between runs)."""
    if session.get(Region, region_id) is None:
        session.add(Region(id=region_id, description=""))
        session.flush()
    service = session.scalar(sa.select(CatalogService).where(CatalogService.type == service_type)
                             .order_by(CatalogService.id))
    if service is None:
        service = create_service(session, {"type": service_type, "name": service_name})
    endpoint = session.scalar(sa.select(Endpoint).where(Endpoint.service_id == service.id,
                                                        Endpoint.interface == interface,
                                                        Endpoint.region_id == region_id))
    if endpoint is None:
        create_endpoint(session, {"service_id": service.id, "interface": interface, "region_id": region_id,
                                  "url": url})
    else:
        endpoint.url = url
        endpoint.enabled = True

