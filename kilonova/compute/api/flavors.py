"""/v2.1/flavors: flavors, their extra specs (os-extra_specs) and project access (os-flavor-access)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import extra_spec_rules, query_params, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import limit_and_marker, next_links, parse_bool, require_admin
from kilonova.compute.api.microversions import want
from kilonova.compute.api.views import links
from kilonova.compute.db import flavors

MAX_INT = 0x7FFFFFFF

_BOOLEAN = validation.BOOLEAN
_POSITIVE = {"type": ["integer", "string"], "pattern": r"^[0-9]*$", "minimum": 1, "maximum": MAX_INT}
_NON_NEGATIVE = {"type": ["integer", "string"], "pattern": r"^[0-9]*$", "minimum": 0, "maximum": MAX_INT}
_FLAVOR_PROPS = {
    "name": validation.NAME,
    "id": {"type": ["string", "number", "null"], "minLength": 1, "maxLength": 255,
           "pattern": r"^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
    "ram": _POSITIVE, "vcpus": _POSITIVE, "disk": _NON_NEGATIVE,
    "OS-FLV-EXT-DATA:ephemeral": _NON_NEGATIVE, "swap": _NON_NEGATIVE,
    "rxtx_factor": {"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$", "minimum": 0,
                    "exclusiveMinimum": True, "maximum": 3.40282e+38},
    "os-flavor-access:is_public": _BOOLEAN,
}
_DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 65535,
                "pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"}


def _create_schema(with_description: bool, with_rxtx: bool = True) -> dict:
    props = dict(_FLAVOR_PROPS, **({"description": _DESCRIPTION} if with_description else {}))
    if not with_rxtx:  # 2.102 removed rxtx_factor (a nova-network relic)
        del props["rxtx_factor"]
    return {"type": "object", "required": ["flavor"], "additionalProperties": False,
            "properties": {"flavor": {"type": "object", "properties": props, "additionalProperties": False,
                                      "required": ["name", "ram", "vcpus", "disk"]}}}


_CREATE = _create_schema(False)
_CREATE_255 = _create_schema(True)
_CREATE_2102 = _create_schema(True, with_rxtx=False)
# From 2.102 the list's query schema is closed: another parameter is a 400, not ignored.
_LIST_QUERY = {name: query_params.STRING for name in ("is_public", "minRam", "minDisk", "sort_key", "sort_dir",
                                                       "limit", "marker")}
_UPDATE = {"type": "object", "required": ["flavor"], "additionalProperties": False,
           "properties": {"flavor": {"type": "object", "properties": {"description": _DESCRIPTION},
                                     "required": ["description"], "additionalProperties": False}}}
_SPEC_KEY = r"^[a-zA-Z0-9-_:. ]{1,255}$"
_SPECS = {"type": "object", "additionalProperties": False, "patternProperties": {
    _SPEC_KEY: {"type": ["string", "number", "boolean"], "minLength": 1, "maxLength": 255}}}
_SPECS_BODY = {"type": "object", "properties": {"extra_specs": _SPECS}, "required": ["extra_specs"],
               "additionalProperties": False}
_SPEC_ITEM = dict(_SPECS, minProperties=1, maxProperties=1)
_TENANT = {"type": "object", "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}},
           "required": ["tenant"], "additionalProperties": False}


# ---------------------------------------------------------------- views

def _basic(request: Request, flavor) -> dict[str, Any]:
    body = {"id": flavor.flavorid, "name": flavor.name, "links": links(request, "flavors", flavor.flavorid)}
    if want(request, "2.55"):
        body["description"] = flavor.description
    return body


def _detail(request: Request, flavor, *, new: bool = False) -> dict[str, Any]:
    """The full flavor; ``new``: just created, so it has no extra specs yet (none are loaded)."""
    # Before 2.75 a swap of 0 shows as the empty string, as upstream's legacy view did.
    swap = flavor.swap if (flavor.swap or want(request, "2.75")) else ""
    body = {"id": flavor.flavorid, "name": flavor.name, "ram": flavor.memory_mb, "disk": flavor.root_gb,
            "swap": swap, "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
            "OS-FLV-DISABLED:disabled": flavor.disabled, "vcpus": flavor.vcpus,
            "os-flavor-access:is_public": flavor.is_public, "links": links(request, "flavors", flavor.flavorid)}
    if not want(request, "2.102"):
        body["rxtx_factor"] = flavor.rxtx_factor or ""
    if want(request, "2.55"):
        body["description"] = flavor.description
    if want(request, "2.61"):
        body["extra_specs"] = {} if new else {spec.key: spec.value for spec in flavor.extra_specs}
    return body


# ---------------------------------------------------------------- flavors

def _list_filters(request: Request) -> dict[str, Any]:
    ctx = request.state.context
    params = request.query_params
    filters: dict[str, Any] = {"project_id": ctx.project_id}
    if ctx.is_admin:
        raw = params.get("is_public")
        if raw is None:
            filters["is_public"] = True
        elif raw.strip().lower() == "none":
            filters["is_public"] = None
        else:
            filters["is_public"] = parse_bool(raw, "is_public filter")
    else:
        filters.update(is_public=True, disabled=False)
    for param, key in (("minRam", "min_memory_mb"), ("minDisk", "min_root_gb")):
        if param in params:
            try:
                filters[key] = int(params[param])
            except ValueError:
                raise HTTPError(400, f"Invalid {param} filter [{params[param]}]") from None
    sort_key = params.get("sort_key") or "flavorid"
    sort_dir = params.get("sort_dir") or "asc"
    if sort_key not in flavors.SORT_KEYS:
        raise HTTPError(400, f"Invalid input for query parameters sort_key. Value: {sort_key}. "
                             f"'{sort_key}' is not one of {list(flavors.SORT_KEYS)}")
    if sort_dir not in ("asc", "desc"):
        raise HTTPError(400, f"Invalid input for query parameters sort_dir. Value: {sort_dir}. "
                             f"'{sort_dir}' is not one of ['asc', 'desc']")
    return dict(filters, sort_key=sort_key, sort_dir=sort_dir)


async def _list(request: Request, view, collection: str):
    query_params.closed_from_2102(request, _LIST_QUERY)
    filters = _list_filters(request)
    limit, marker = limit_and_marker(request)
    try:
        rows = await compute_api(request).api_db.read(flavors.list_flavors, limit=limit, marker=marker, **filters)
    except flavors.MarkerNotFound:
        raise HTTPError(400, f"marker [{marker}] not found") from None
    body: dict[str, Any] = {"flavors": [view(request, row) for row in rows]}
    page_links = next_links(request, collection, [row.flavorid for row in rows], limit)
    if page_links:
        body["flavors_links"] = page_links
    return json_response(body)


async def list_flavors(request: Request):
    return await _list(request, _basic, "flavors")


async def list_flavors_detail(request: Request):
    return await _list(request, _detail, "flavors/detail")


async def _get(request: Request, flavor_id: str, read=flavors.get_by_flavorid):
    ctx = request.state.context
    try:
        return await compute_api(request).api_db.read(read, flavor_id, project_id=ctx.project_id,
                                                      is_admin=ctx.is_admin)
    except NotFound:
        raise HTTPError(404, f"Flavor {flavor_id} could not be found.") from None


async def show_flavor(request: Request, flavor_id: str):
    return json_response({"flavor": _detail(request, await _get(request, flavor_id, flavors.view_by_flavorid))})


def _int_field(value: Any, name: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HTTPError(400, f"Invalid input received: {name} must be an integer.") from None
    if number < minimum:
        raise HTTPError(400, f"Invalid input received: {name} must be >= {minimum}")
    if number > MAX_INT:
        raise HTTPError(400, f"Invalid input received: {name} must be <= {MAX_INT}")
    return number


def _flavor_values(request: Request, body: dict) -> dict[str, Any]:
    vals = body["flavor"]
    flavorid = vals.get("id")
    if flavorid is not None and str(flavorid).strip().lower() == "auto":
        flavorid = None
    values = {
        "name": vals["name"].strip(), "flavorid": None if flavorid is None else str(flavorid),
        "memory_mb": _int_field(vals["ram"], "ram", 1), "vcpus": _int_field(vals["vcpus"], "vcpus", 1),
        "root_gb": _int_field(vals["disk"], "disk", 0),
        "ephemeral_gb": _int_field(vals.get("OS-FLV-EXT-DATA:ephemeral", 0), "ephemeral", 0),
        "swap": _int_field(vals.get("swap", 0), "swap", 0),
        "rxtx_factor": float(vals.get("rxtx_factor", 1.0)),
        "is_public": parse_bool(vals.get("os-flavor-access:is_public", True), "is_public value"),
    }
    if want(request, "2.55"):
        values["description"] = vals.get("description")
    return values


async def create_flavor(request: Request):
    require_admin(request, "os_compute_api:os-flavor-manage:create")
    body = await read_json(request)
    validation.validate(_CREATE_2102 if want(request, "2.102") else _CREATE_255 if want(request, "2.55") else _CREATE,
                        body)
    values = _flavor_values(request, body)
    try:
        flavor = await compute_api(request).api_db.write(flavors.create, values)
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    return json_response({"flavor": _detail(request, flavor, new=True)})


async def update_flavor(request: Request, flavor_id: str):
    if not want(request, "2.55"):
        raise HTTPError(404, "The resource could not be found.")
    require_admin(request, "os_compute_api:os-flavor-manage:update")
    body = await read_json(request)
    validation.validate(_UPDATE, body)
    try:
        flavor = await compute_api(request).api_db.write(flavors.update_description, flavor_id,
                                                         body["flavor"]["description"])
    except NotFound:
        raise HTTPError(404, f"Flavor {flavor_id} could not be found.") from None
    return json_response({"flavor": _detail(request, flavor)})


async def delete_flavor(request: Request, flavor_id: str):
    require_admin(request, "os_compute_api:os-flavor-manage:delete")
    try:
        await compute_api(request).api_db.write(flavors.delete, flavor_id)
    except NotFound:
        raise HTTPError(404, f"Flavor {flavor_id} could not be found.") from None
    return empty_response(202)


# ---------------------------------------------------------------- os-flavor-access

def _access_body(flavor_id: str, projects: list[str]) -> dict:
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": p} for p in projects]}


async def list_access(request: Request, flavor_id: str):
    require_admin(request, "os_compute_api:os-flavor-access")
    flavor = await _get(request, flavor_id)
    if flavor.is_public:
        raise HTTPError(404, "Access list not available for public flavors.")
    return json_response(_access_body(flavor_id, sorted(p.project_id for p in flavor.projects)))


async def flavor_action(request: Request, flavor_id: str):
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1 or \
            next(iter(body)) not in ("addTenantAccess", "removeTenantAccess"):
        name = next(iter(body), "") if isinstance(body, dict) else ""
        raise HTTPError(400, f"There is no such action: {name}")
    action = next(iter(body))
    require_admin(request, f"os_compute_api:os-flavor-access:{'add' if action[0] == 'a' else 'remove'}"
                           "_tenant_access")
    validation.validate({"type": "object", "properties": {action: _TENANT}, "required": [action],
                         "additionalProperties": False}, body)
    tenant = body[action]["tenant"]
    flavor = await _get(request, flavor_id)
    db = compute_api(request).api_db
    try:
        if action == "addTenantAccess":
            if flavor.is_public and want(request, "2.7"):
                raise HTTPError(409, "Can not add access to a public flavor.")
            projects = await db.write(flavors.add_access, flavor_id, tenant)
        else:
            projects = await db.write(flavors.remove_access, flavor_id, tenant)
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    return json_response(_access_body(flavor_id, projects))


# ---------------------------------------------------------------- os-extra_specs

def _spec_values(request: Request, specs: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in specs.items():
        text = str(value)
        if len(text) > 255:
            raise HTTPError(400, f"Invalid input received: extra_specs value has {len(text)} characters, "
                                 "more than 255.")
        if want(request, "2.86"):  # the specs upstream knows must be well-formed
            extra_spec_rules.check(key, text)
        out[key] = text
    return out


async def list_specs(request: Request, flavor_id: str):
    flavor = await _get(request, flavor_id)
    return json_response({"extra_specs": {s.key: s.value for s in flavor.extra_specs}})


async def create_specs(request: Request, flavor_id: str):
    require_admin(request, "os_compute_api:os-flavor-extra-specs:create")
    body = await read_json(request)
    validation.validate(_SPECS_BODY, body)
    specs = _spec_values(request, body["extra_specs"])
    await _get(request, flavor_id)
    await compute_api(request).api_db.write(flavors.set_extra_specs, flavor_id, specs)
    return json_response(body)


async def show_spec(request: Request, flavor_id: str, key: str):
    flavor = await _get(request, flavor_id)
    for spec in flavor.extra_specs:
        if spec.key == key:
            return json_response({key: spec.value})
    raise HTTPError(404, f"Flavor {flavor_id} has no extra specs with key {key}.")


async def update_spec(request: Request, flavor_id: str, key: str):
    require_admin(request, "os_compute_api:os-flavor-extra-specs:update")
    body = await read_json(request)
    validation.validate(_SPEC_ITEM, body)
    if key not in body:
        raise HTTPError(400, "Request body and URI mismatch")
    await _get(request, flavor_id)
    await compute_api(request).api_db.write(flavors.set_extra_specs, flavor_id, _spec_values(request, body))
    return json_response(body)


async def delete_spec(request: Request, flavor_id: str, key: str):
    require_admin(request, "os_compute_api:os-flavor-extra-specs:delete")
    await _get(request, flavor_id)
    try:
        await compute_api(request).api_db.write(flavors.delete_extra_spec, flavor_id, key)
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    return empty_response(200)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/flavors", list_flavors)
    router.add("POST", "/v2.1/flavors", create_flavor)
    router.add("GET", "/v2.1/flavors/detail", list_flavors_detail)
    router.add("GET", "/v2.1/flavors/{flavor_id}", show_flavor)
    router.add("PUT", "/v2.1/flavors/{flavor_id}", update_flavor)
    router.add("DELETE", "/v2.1/flavors/{flavor_id}", delete_flavor)
    router.add("POST", "/v2.1/flavors/{flavor_id}/action", flavor_action)
    router.add("GET", "/v2.1/flavors/{flavor_id}/os-flavor-access", list_access)
    router.add("GET", "/v2.1/flavors/{flavor_id}/os-extra_specs", list_specs)
    router.add("POST", "/v2.1/flavors/{flavor_id}/os-extra_specs", create_specs)
    router.add("GET", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", show_spec)
    router.add("PUT", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", update_spec)
    router.add("DELETE", "/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", delete_spec)
