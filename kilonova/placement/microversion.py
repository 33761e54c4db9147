"""Placement microversions: negotiation, and the list that doubles as the changelog.

Requested with ``OpenStack-API-Version: placement X.Y`` (or ``latest``); the
default is 1.0. Handlers branch with ``want(request, "1.20")``.
"""
from __future__ import annotations

from typing import Callable

from starlette.requests import Request

from kilonova.common import microversion as common_microversion
from kilonova.common.http import Handler, HTTPError

VERSIONS = [
    "1.0",   # Initial: resource providers, inventories, usages, allocations.
    "1.1",   # Resource provider aggregates (GET/PUT /resource_providers/{uuid}/aggregates).
    "1.2",   # /resource_classes: list, create, show, update, delete custom classes.
    "1.3",   # member_of filter on GET /resource_providers.
    "1.4",   # resources filter on GET /resource_providers.
    "1.5",   # DELETE /resource_providers/{uuid}/inventories.
    "1.6",   # /traits and /resource_providers/{uuid}/traits.
    "1.7",   # PUT /resource_classes/{name} is a bodiless create-or-confirm.
    "1.8",   # project_id and user_id required in PUT /allocations/{consumer}.
    "1.9",   # GET /usages?project_id=&user_id=.
    "1.10",  # GET /allocation_candidates.
    "1.11",  # 'allocations' link in resource provider representations.
    "1.12",  # Allocations as dicts keyed by provider in PUT/GET /allocations and candidates.
    "1.13",  # POST /allocations for several consumers at once.
    "1.14",  # Nested providers: parent/root_provider_uuid, in_tree filter.
    "1.15",  # Last-Modified and Cache-Control headers on GET responses.
    "1.16",  # limit on GET /allocation_candidates.
    "1.17",  # required traits on GET /allocation_candidates; traits in provider summaries.
    "1.18",  # required traits on GET /resource_providers.
    "1.19",  # Generation in provider aggregates GET/PUT, with conflict detection.
    "1.20",  # POST /resource_providers answers 200 with the provider body.
    "1.21",  # member_of (incl. in:) on GET /allocation_candidates.
    "1.22",  # Forbidden traits (!TRAIT) in required.
    "1.23",  # 'code' in error bodies.
    "1.24",  # Repeated member_of parameters (AND of ORs) on GET /resource_providers.
    "1.25",  # Granular numbered request groups and group_policy on GET /allocation_candidates.
    "1.26",  # Inventory reserved may equal total.
    "1.27",  # Provider summaries list every inventoried resource class.
    "1.28",  # Consumer generations in allocation requests and responses.
    "1.29",  # Nested providers in allocation candidates; parent/root uuids in summaries.
    "1.30",  # POST /reshaper.
    "1.31",  # in_tree and in_tree<N> on GET /allocation_candidates.
    "1.32",  # Forbidden aggregates (member_of=!...) on providers and candidates.
    "1.33",  # Request group suffixes may be strings ([a-zA-Z0-9_-]{1,64}).
    "1.34",  # 'mappings' of request groups to providers in allocation requests.
    "1.35",  # root_required on GET /allocation_candidates.
    "1.36",  # same_subtree and resourceless request groups.
    "1.37",  # Re-parenting and un-parenting providers with PUT /resource_providers/{uuid}.
    "1.38",  # consumer_type on allocations; usages grouped by consumer type.
    "1.39",  # any-traits: required=in:A,B and repeated required/root_required.
]

# Highest version implemented faithfully (advertised in GET / and used for "latest").
MAX_VERSION = "1.39"
MIN_VERSION = VERSIONS[0]
SERVICE = "placement"


def parse(text: str) -> tuple[int, int]:
    """A version of this module's own tables (``"1.39"``); ValueError for anything else."""
    version = common_microversion.parse(text)
    if version is None:
        raise ValueError(text)
    return version


MIN = parse(MIN_VERSION)
MAX = parse(MAX_VERSION)


def requested(request: Request) -> str | None:
    """The version text asked for, read by upstream's microversion-parse (kilonova/common/microversion.py):
    repeated headers count as one comma-joined value, the last ``placement <rest>`` entry wins and its rest
    is taken whole."""
    return common_microversion.requested(request, SERVICE)


def _numbers(text: str) -> tuple[int, int]:
    """Major and minor as Python's int() reads them (signs, underscores, inner spaces), as upstream; a
    400 whose detail ends with the parse error upstream reports."""
    try:
        numbers = [int(piece) for piece in text.split(".", 1)]
    except ValueError as error:
        reason = str(error)
    else:
        if len(numbers) == 2:
            return numbers[0], numbers[1]
        reason = "Version.__new__() missing 1 required positional argument: 'minor'"
    raise HTTPError(400, f"Invalid microversion: invalid version string: {text}; {reason}")


def negotiate(request: Request) -> tuple[int, int]:
    """The version the request asked for; 400 when not two integers, 406 when not a version served."""
    text = requested(request)
    if text is None:
        return MIN
    if text == "latest":   # only in lower case, as upstream
        return MAX
    version = _numbers(text)
    if not MIN <= version <= MAX:
        raise HTTPError(406, f"Invalid microversion: Unacceptable version header: {text}", min_version=MIN_VERSION,
                        max_version=MAX_VERSION)
    return version


def want(request: Request, version: str) -> bool:
    """True when the request's microversion is at least ``version``."""
    return request.state.version >= parse(version)


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def versioned(min_version: str, max_version: str | None = None, status: int = 404) -> Callable[[Handler], Handler]:
    """Limit a handler to a range of microversions; outside it answer ``status`` (404 or 405)."""
    versions = (parse(min_version), parse(max_version) if max_version else None, status)

    def decorator(handler: Handler) -> Handler:
        async def wrapper(request: Request, **params):
            require(request, versions)
            return await handler(request, **params)
        wrapper.__name__ = handler.__name__
        wrapper.__doc__ = handler.__doc__
        wrapper.versions = versions   # checked before the policy as well (app.make_before), as upstream
        for mark in ("public", "policy", "json_only"):
            if hasattr(handler, mark):
                setattr(wrapper, mark, getattr(handler, mark))
        return wrapper
    return decorator


def require(request: Request, versions: tuple) -> None:
    """Refuse a request whose microversion is outside ``versions`` (low, high or None, status)."""
    low, high, status = versions
    version = request.state.version
    if version < low or (high is not None and version > high):
        if status == 405:
            raise HTTPError(405, "")   # webob's 405 without a detail, as upstream
        raise HTTPError(404, "")
