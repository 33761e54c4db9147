"""Placement pre-filters, as upstream's request filters: before any host is looked at, a request's Placement
query gains the aggregates and traits that rule hosts out in the database instead of one by one.

Each pre-filter reads the request and the aggregates (API database) and adds to the ``PlacementQuery``:

* ``require_tenant_aggregate`` (``[scheduler] limit_tenants_to_placement_aggregate``): a project named in
  aggregates' ``filter_tenant_id*`` metadata goes only to those aggregates; with
  ``placement_aggregate_required_for_tenants`` a project named in none goes nowhere.
* ``map_az_to_placement_aggregate`` (``query_placement_for_availability_zone``, on by default as upstream
  since Xena): a requested zone defined by aggregates means those aggregates. (The zone of hosts in no
  zone aggregate, ``[compute] default_availability_zone``, has no aggregate: AvailabilityZoneFilter, still
  enabled, decides those.)
* ``compute_status_filter`` (always): providers with the ``COMPUTE_STATUS_DISABLED`` trait are forbidden.
* ``require_image_type_support`` (``query_placement_for_image_type_support``, off by default): the image's
  disk format as a required ``COMPUTE_IMAGE_TYPE_*`` trait (not for a server booted from a volume).
* ``transform_traits``: ``trait:X=required|forbidden`` from the flavor's extra specs and image properties.
* ``isolate_aggregates`` (``enable_isolated_aggregate_filtering``, off by default): an aggregate whose
  metadata requires traits (``trait:X=required``) takes only requests that require all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TENANT_KEY = "filter_tenant_id"
AZ_KEY = "availability_zone"
DISABLED_TRAIT = "COMPUTE_STATUS_DISABLED"


class NoAggregateForTenant(Exception):
    """``placement_aggregate_required_for_tenants`` and the project is in no aggregate's filter_tenant_id."""


@dataclass
class PlacementQuery:
    resources: dict[str, int]
    required: list[str] = field(default_factory=list)      # TRAIT, or !TRAIT for a forbidden one
    member_of: list[str] = field(default_factory=list)     # each "in:a,b" or "!in:a,b" (AND of them)
    in_tree: str | None = None
    # (pre-filter, what it added), in the order added: how an empty answer is explained
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, stage: str, *, required: list[str] = (), member_of: list[str] = (), why: str = "") -> None:
        required = [t for t in required if t not in self.required]
        self.required.extend(required)
        self.member_of.extend(member_of)
        if required or member_of:
            self.steps.append((stage, {"required": list(required), "member_of": list(member_of), "why": why}))

    def params(self, limit: int, upto: int | None = None) -> list[tuple[str, str]]:
        """The GET /allocation_candidates parameters; ``upto``: only the first that many steps' additions."""
        required, member_of = self.required, self.member_of
        if upto is not None:
            required = [t for _, add in self.steps[:upto] for t in add["required"]]
            member_of = [m for _, add in self.steps[:upto] for m in add["member_of"]]
        params = [("resources", ",".join(f"{rc}:{n}" for rc, n in sorted(self.resources.items()))),
                  ("limit", str(limit))]
        if required:
            params.append(("required", ",".join(sorted(required))))
        params.extend(("member_of", m) for m in member_of)
        if self.in_tree:
            params.append(("in_tree", self.in_tree))
        return params


def traits_of(spec: dict[str, Any]) -> list[str]:
    """required=... entries of the flavor's extra specs and the image's properties: TRAIT or !TRAIT."""
    wanted: dict[str, str] = {}
    for source in ((spec["flavor"].get("extra_specs") or {}), ((spec.get("image") or {}).get("properties") or {})):
        for key, value in source.items():
            if key.startswith("trait:") and value in ("required", "forbidden"):
                wanted[key.split(":", 1)[1]] = value
    return sorted(name if how == "required" else "!" + name for name, how in wanted.items())


def apply(conf, spec: dict[str, Any], query: PlacementQuery, aggregates: list[dict[str, Any]]) -> None:
    """Every enabled pre-filter, in upstream's order."""
    if conf.getbool("scheduler", "limit_tenants_to_placement_aggregate"):
        require_tenant_aggregate(conf, spec, query, aggregates)
    if conf.getbool("scheduler", "query_placement_for_availability_zone"):
        map_az_to_placement_aggregate(spec, query, aggregates)
    query.add("compute_status_filter", required=["!" + DISABLED_TRAIT], why="compute service disabled")
    if conf.getbool("scheduler", "query_placement_for_image_type_support"):
        require_image_type_support(spec, query)
    query.add("transform_traits", required=traits_of(spec), why="the flavor's and image's trait: specs")
    if conf.getbool("scheduler", "enable_isolated_aggregate_filtering"):
        isolate_aggregates(spec, query, aggregates)


def require_tenant_aggregate(conf, spec, query: PlacementQuery, aggregates) -> None:
    project = spec.get("project_id")
    mine = sorted(a["uuid"] for a in aggregates
                  if any(k.startswith(TENANT_KEY) and project in _values(v) for k, v in a["metadata"].items()))
    if mine:
        query.add("require_tenant_aggregate", member_of=["in:" + ",".join(mine)],
                  why=f"project {project} is kept to aggregates {', '.join(_names(aggregates, mine))} "
                      "(filter_tenant_id)")
    elif conf.getbool("scheduler", "placement_aggregate_required_for_tenants"):
        raise NoAggregateForTenant(f"project {project} is in no aggregate's filter_tenant_id and "
                                   "[scheduler] placement_aggregate_required_for_tenants is set")


def map_az_to_placement_aggregate(spec, query: PlacementQuery, aggregates) -> None:
    zone = spec.get("availability_zone")
    if not zone:
        return
    zoned = sorted(a["uuid"] for a in aggregates if a["metadata"].get(AZ_KEY) == zone)
    if zoned:
        query.add("map_az_to_placement_aggregate", member_of=["in:" + ",".join(zoned)],
                  why=f"availability zone {zone} is aggregates {', '.join(_names(aggregates, zoned))}")


def require_image_type_support(spec, query: PlacementQuery) -> None:
    disk_format = (spec.get("image") or {}).get("disk_format")
    if disk_format and not spec.get("is_bfv"):
        query.add("require_image_type_support", required=[f"COMPUTE_IMAGE_TYPE_{disk_format.upper()}"],
                  why=f"image disk format {disk_format}")


def isolate_aggregates(spec, query: PlacementQuery, aggregates) -> None:
    requested = {t for t in traits_of(spec) if not t.startswith("!")}
    isolated = sorted(a["uuid"] for a in aggregates
                      if (needed := {k[6:] for k, v in a["metadata"].items()
                                     if k.startswith("trait:") and v == "required"}) and not needed <= requested)
    if isolated:
        query.add("isolate_aggregates", member_of=["!in:" + ",".join(isolated)],
                  why=f"aggregates {', '.join(_names(aggregates, isolated))} require traits the request "
                      "does not")


def _values(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",")}


def _names(aggregates, uuids: list[str]) -> list[str]:
    by_uuid = {a["uuid"]: a["name"] for a in aggregates}
    return [by_uuid.get(u, u) for u in uuids]
