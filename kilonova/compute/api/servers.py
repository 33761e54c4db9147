"""/v2.1/servers: list, show, create, update, delete."""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import create as create_mod
from kilonova.compute.api import (common, disk_config, lookup, query_params, server_query, server_records,
                                  server_schemas, server_sort, validation, views)
from kilonova.compute.api.app import compute_api
from kilonova.compute.api import port_quota, security_group_bindings, security_group_lookup
from kilonova.compute import volume_api
from kilonova.compute.api import boot_volumes, host_status, spec_fields
from kilonova.compute.api import server_group_hint, server_groups
from kilonova.compute.api.create_refusals import refuse_unsupported
from kilonova.compute.api.destination import forced as forced_destination
from kilonova.compute.api.destination import requested as requested_destination
from kilonova.compute.api.destination import split_zone
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers.shelve import pin_zone
from kilonova.compute.cells import CellDown
from kilonova.compute.db import block_devices, build_requests, instances
from kilonova.compute.quota import claims

# ---------------------------------------------------------------- list / show


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None:
        return None
    if not raw.isdigit():
        raise HTTPError(400, "limit param must be an integer")
    return min(int(raw), 1000)


def _all_tenants(request: Request) -> bool:
    """``all_tenants`` (or ``all_projects``) as upstream reads it: a strict boolean, 400 for anything else;
    given without a value it means yes."""
    name = "all_tenants" if "all_tenants" in request.query_params else "all_projects"
    raw = request.query_params.get(name)
    if raw is None:
        return False
    return not raw.strip() or bool(server_query.strict_bool(request, name))


async def _list(request: Request, detailed: bool):
    svc = compute_api(request)
    ctx = request.state.context
    params = request.query_params
    rule = "os_compute_api:servers:" + ("detail" if detailed else "index")
    common.authorize(request, rule)
    # As upstream: without all_tenants, an administrator too lists only the own project's servers.
    project_id = ctx.project_id
    if _all_tenants(request):
        common.authorize(request, rule + ":get_all_tenants")
        project_id = params.get("project_id") or params.get("tenant_id")
    server_query.check_unknown(request)
    order = server_sort.parse(request)
    db_filters, post = server_query.filters(request)
    # A time window also shows the servers deleted in it, as upstream does (the way to see deletions).
    timed = "changes-since" in db_filters or "changes-before" in db_filters
    deleted = server_query.deleted(request, timed=timed,
                                   wants_deleted_status=db_filters.get("vm_state") == ["deleted"])
    limit = _limit(request)
    # A cell that is down: its servers come as UNKNOWN partial records from 2.69 (when nothing but
    # the project narrows the list, since no other filter can be checked), and are left out before.
    show_down = want(request, views.CELL_DOWN_VERSION) and not db_filters and not post and \
        not (ctx.is_admin and "deleted" in params)
    found = await lookup.page(svc, project_id=project_id, filters=db_filters, limit=None if post else limit,
                              marker=params.get("marker"), ctx=ctx, deleted=deleted,
                              include_build_requests=deleted is False, include_down=show_down,
                              order=order,
                              pending_filter=server_query.pending_filter(db_filters) if db_filters else None)
    refs = [ref for ref in found.refs if ref.down or server_query.post_filter(ref.server, post)]
    if limit is not None:
        refs = refs[:limit]
    if detailed:
        faults = await _faults(refs)
        volumes = await _volumes(refs)
        hosts = await host_status.statuses(request, refs)
        filled = await spec_fields.completed(request, [ref.server for ref in refs if not ref.down])
        groups = await security_group_bindings.names(svc, ctx, [ref.uuid for ref in refs if not ref.down])
        body = [views.detail_down(request, ref.server) if ref.down
                else views.detail(request, security_group_bindings.shown(filled.get(ref.uuid, ref.server), groups),
                                  fault=faults.get(ref.uuid), volumes=volumes.get(ref.uuid),
                                  host_status=hosts.get(ref.uuid))
                for ref in refs]
    else:
        body = [views.minimal_down(request, ref.server) if ref.down
                else views.minimal(request, ref.server) for ref in refs]
    result: dict[str, Any] = {"servers": body}
    if limit is not None:
        links = common.next_links(request, "servers/detail" if detailed else "servers",
                                  [ref.uuid for ref in refs], limit)
        if links:
            result["servers_links"] = links
    return json_response(result)


async def _faults(refs: list[lookup.ServerRef]) -> dict[str, dict]:
    cells: dict[str, Any] = {}
    by_cell: dict[str, list[str]] = {}
    for ref in refs:
        if ref.cell is not None and not ref.down and ref.server["vm_state"] in ("error", "deleted"):
            cells[ref.cell.uuid] = ref.cell
            by_cell.setdefault(ref.cell.uuid, []).append(ref.uuid)
    faults: dict[str, dict] = {}
    for cell_uuid, uuids in by_cell.items():
        try:
            faults.update(await cells[cell_uuid].read(instances.latest_faults, uuids))
        except CellDown:
            continue  # went down since the servers were read: they show without their fault
    return faults


async def _volumes(refs: list[lookup.ServerRef]) -> dict[str, list[dict]]:
    """The block device mappings of the servers, by server, one query per cell."""
    cells: dict[str, Any] = {}
    by_cell: dict[str, list[str]] = {}
    for ref in refs:
        if ref.cell is not None and not ref.down and not ref.cell.is_cell0:
            cells[ref.cell.uuid] = ref.cell
            by_cell.setdefault(ref.cell.uuid, []).append(ref.uuid)
    found: dict[str, list[dict]] = {}
    for cell_uuid, uuids in by_cell.items():
        try:
            found.update(await cells[cell_uuid].read(block_devices.for_instances, uuids))
        except CellDown:
            continue
    return found


async def list_servers(request: Request):
    return await _list(request, detailed=False)


async def list_servers_detail(request: Request):
    return await _list(request, detailed=True)


async def show_server(request: Request, server_id: str):
    query_params.closed_from_2102(request)
    svc = compute_api(request)
    ref = await lookup.find(svc, request.state.context, server_id,
                            allow_down=want(request, views.CELL_DOWN_VERSION))
    common.authorize(request, "os_compute_api:servers:show", common.server_target(ref.server))
    if ref.down:
        return json_response({"server": views.detail_down(request, ref.server, full=True)})
    faults = await _faults([ref])
    volumes = await _volumes([ref])
    hosts = await host_status.statuses(request, [ref])
    groups = await security_group_bindings.names(svc, request.state.context, [ref.uuid])
    server = (await spec_fields.completed(request, [ref.server])).get(ref.uuid, ref.server)
    server = await server_groups.with_groups(request, server)
    return json_response({"server": views.detail(request, security_group_bindings.shown(server, groups),
                                                 fault=faults.get(ref.uuid), shape="show",
                                                 volumes=volumes.get(ref.uuid), host_status=hosts.get(ref.uuid))})


# ---------------------------------------------------------------- create


def _check_create_rules(request: Request, server: dict[str, Any]) -> None:
    """Upstream's rules for what a create asks for besides a server: networks, volumes, trusted certificates."""
    if isinstance(server.get("networks"), list) and server["networks"]:
        common.authorize(request, "os_compute_api:servers:create:attach_network")
    if server.get("block_device_mapping_v2") or server.get("block_device_mapping"):
        common.authorize(request, "os_compute_api:servers:create:attach_volume")
    if server.get("trusted_image_certificates"):
        common.authorize(request, "os_compute_api:servers:create:trusted_certs")


async def create_server(request: Request):
    svc = compute_api(request)
    ctx = request.state.context
    common.authorize(request, "os_compute_api:servers:create")
    body = await read_json(request)
    validation.validate(server_schemas.create(request.state.version), body)
    server = body["server"]
    _check_create_rules(request, server)
    hints = body.get("os:scheduler_hints") or body.get("OS-SCH-HNT:scheduler_hints") or {}
    min_count = int(server.get("min_count", 1))
    max_count = int(server.get("max_count", min_count))
    for name, count in (("min_count", min_count), ("max_count", max_count)):
        if count < 1:   # a string of digits: the schema's minimum is for numbers only
            raise HTTPError(400, f"Invalid input for field/attribute {name}. Value: {count}. "
                                 f"{count} is less than the minimum of 1")
    if min_count > max_count:
        raise HTTPError(400, "min_count must be <= max_count")
    if server.get("hostname") and max_count > 1:
        raise HTTPError(400, "Unable to allocate a single hostname to multiple instances")
    image_ref = str(server.get("imageRef") or "").rstrip("/").rsplit("/", 1)[-1]
    plan = boot_volumes.parse(server, image_ref)
    create_mod.check_user_data(server.get("user_data"))
    refuse_unsupported(server, hints)
    group = await server_group_hint.requested_group(svc, ctx, hints)
    destination = await requested_destination(svc, ctx, server)
    az, forced_host, forced_node = split_zone(server.get("availability_zone"))
    if az is not None and az not in await svc_zones(svc):
        raise HTTPError(400, "The requested availability zone is not available")
    destination = destination or await forced_destination(svc, ctx, forced_host, forced_node)
    flavor = await create_mod.load_flavor(svc, ctx, server["flavorRef"])
    if not flavor["root_gb"] and plan.root is None and \
            not common.allowed(request, "os_compute_api:servers:create:zero_disk_flavor"):
        raise HTTPError(403, "Only volume-backed servers are allowed for flavors with zero disk.")
    fetched = await create_mod.fetch_image(svc, ctx, image_ref) if image_ref and plan.root is None else None
    if fetched is not None and boot_volumes.image_mappings(fetched):
        # The image of a volume-backed server's snapshot: its block device mapping makes the server's volumes.
        server = boot_volumes.with_image_mappings(server, fetched)
        plan = boot_volumes.parse(server, image_ref)
    volumes = volume_api.for_caller(svc.volume, ctx)
    if plan.root is None:
        image = await create_mod.load_image(svc, ctx, server["imageRef"], flavor, fetched=fetched)
    elif plan.image_id:
        image = {**await create_mod.load_image(svc, ctx, plan.image_id, flavor, plan.root["volume_size"]), "id": ""}
    elif plan.root["source_type"] == "snapshot" and image_ref:  # an image of a volume-backed server's snapshot
        image = {**await create_mod.load_image(svc, ctx, image_ref, flavor, plan.root["volume_size"] or 0,
                                               fetched=fetched), "id": ""}
    else:
        image = await boot_volumes.root_image(volumes, plan)
    await boot_volumes.check(volumes, plan, max_count)
    keypair = await create_mod.load_keypair(svc, ctx, server.get("key_name"))
    networks = await create_mod.resolve_networks(svc, ctx, request, server.get("networks"))
    answered_groups, shown_groups, group_ids = await security_group_lookup.groups_for_create(
        request, server.get("security_groups"))
    if group_ids is not None:  # the ports the server's host creates get them (not ports the user made)
        networks = [{**entry, "security_groups": group_ids} if "port_id" not in entry else entry
                    for entry in networks]
    if len([n for n in networks if "port_id" in n]) and max_count > 1:
        raise HTTPError(400, "Unable to launch multiple instances with a single configured port ID. "
                             "Please launch your instance one by one with different ports.")
    max_count = await port_quota.servers_that_fit(svc, ctx, networks, min_count, max_count)
    count = await create_mod.allowed_count(svc, ctx, flavor, min_count, max_count,
                                           metadata_items=len(server.get("metadata") or {}),
                                           is_bfv=plan.root is not None)
    server_group_hint.check_members(group, count)
    reservation_id = "r-" + uuidlib.uuid4().hex[:8]
    servers = [create_mod.build_instance(ctx, server, flavor, image, keypair, index=i, count=count,
                                         reservation_id=reservation_id, az=az) for i in range(count)]
    spec = create_mod.request_spec(ctx, flavor, image, networks, az, count, hints)
    recorded = disk_config.for_image(server_records.system_metadata(
        server, az=az, image_properties=spec["image"]["properties"] if image.get("id") else None, hints=hints),
        image, disk_config.requested(server))
    for built in servers:
        built["system_metadata"] = dict(recorded)
        built["security_groups"] = list(shown_groups)
        if server.get("hostname"):  # 2.90: the user's own hostname instead of one made from the name
            built["hostname"] = server["hostname"]
    if destination:
        spec["requested_destination"] = destination
    if plan.volumes:
        spec["is_bfv"] = plan.root is not None
        spec["block_devices"] = await _prepare_volumes(volumes, plan, servers, flavor)
    try:  # counted again as they are recorded: racing creates never pass the project's limits
        await claims.record(svc, ctx.project_id, flavor, plan.root is not None, count, _record_build_requests,
                            servers, spec, group)
    except HTTPError:
        if plan.volumes:
            for rows in spec["block_devices"].values():
                await boot_volumes.give_back(volumes, rows)
        raise
    await svc.conductor.cast("schedule_and_build_instances", instance_uuids=[s["uuid"] for s in servers],
                             request_spec=spec)
    if validation.is_true(server.get("return_reservation_id", False)):
        return json_response({"reservation_id": reservation_id}, status=202)
    first = servers[0]
    response = {"id": first["uuid"], "links": views.links(request, "servers", first["uuid"]),
                "OS-DCF:diskConfig": disk_config.shown(first),
                "security_groups": [{"name": name} for name in answered_groups]}
    response["adminPass"] = create_mod.admin_password(server)
    return json_response({"server": response}, status=202,
                         headers={"Location": views.links(request, "servers", first["uuid"])[0]["href"]})


async def _prepare_volumes(volumes, plan, servers: list[dict], flavor: dict) -> dict[str, list[dict]]:
    """Each server's volume mappings, their volumes reserved or made (all given back if one cannot be)."""
    prepared: dict[str, list[dict]] = {}
    try:
        for built in servers:
            extra = bool(flavor.get("ephemeral_gb")) + bool(flavor.get("swap")) + bool(built.get("config_drive"))
            prepared[built["uuid"]] = await boot_volumes.prepare(volumes, plan, built, extra)
    except BaseException:
        for rows in prepared.values():
            await boot_volumes.give_back(volumes, rows)
        raise
    return prepared


def _record_build_requests(session, servers: list[dict], spec: dict, group: dict | None = None) -> None:
    for server in servers:
        build_requests.create(session, server, spec)
    server_group_hint.record_members(session, group, [server["uuid"] for server in servers])


async def svc_zones(svc) -> set[str]:
    """Zones a server may be created in: those with an enabled compute service."""
    from kilonova.compute.api.availability_zones import available_zones
    return set(await available_zones(svc))


# ---------------------------------------------------------------- update / delete


async def update_server(request: Request, server_id: str):
    svc = compute_api(request)
    ctx = request.state.context
    body = await read_json(request)
    validation.validate(server_schemas.update(request.state.version), body)
    ref = await lookup.find(svc, ctx, server_id)
    common.authorize(request, "os_compute_api:servers:update", common.server_target(ref.server))
    if ref.cell is None:
        raise HTTPError(409, f"Instance {server_id} is still being scheduled; try again in a moment.")
    changes = {}
    fields = {"name": "display_name", "description": "display_description",
              "accessIPv4": "access_ip_v4", "accessIPv6": "access_ip_v6", "hostname": "hostname"}
    for key, column in fields.items():
        if key in body["server"]:
            value = body["server"][key]
            changes[column] = server_records.access_ip(value) if key.startswith("accessIP") else value
    server = ref.server
    if "OS-DCF:diskConfig" in body["server"]:
        server = dict(server, system_metadata=disk_config.updated(server, body["server"]["OS-DCF:diskConfig"]))
        changes["system_metadata"] = server["system_metadata"]
    if "pinned_availability_zone" in body["server"]:
        changes["system_metadata"] = _pinned(server, body["server"]["pinned_availability_zone"])
    server = await ref.cell.db.write(instances.update, server_id, changes) if changes else ref.server
    if "pinned_availability_zone" in body["server"]:  # where later schedulings (moves, unshelve) go
        await svc.api_db.write(pin_zone, server_id, body["server"]["pinned_availability_zone"])
    server = (await spec_fields.completed(request, [server])).get(server_id, server)
    server = await server_groups.with_groups(request, server)
    return json_response({"server": views.detail(request, server, shape="update")})


def _pinned(server: dict[str, Any], zone: str | None) -> dict[str, Any]:
    """2.104: a server is pinned only to the zone it is in (unpinned with null)."""
    if zone is not None and zone != server.get("availability_zone"):
        raise HTTPError(400, f"The server is in availability zone {server.get('availability_zone')!r}; it can only "
                             f"be pinned to the zone it is in, not to {zone!r}.")
    return server_records.with_pinned_az(server, zone)


async def delete_server(request: Request, server_id: str):
    svc = compute_api(request)
    ctx = request.state.context
    ref = await lookup.find(svc, ctx, server_id)
    common.authorize(request, "os_compute_api:servers:delete", common.server_target(ref.server))
    if ref.server.get("locked") and not ctx.is_admin:
        raise HTTPError(409, f"Instance {server_id} is locked")
    await svc.deleter.delete(ctx, ref)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers", list_servers)
    router.add("POST", "/v2.1/servers", create_server)
    router.add("GET", "/v2.1/servers/detail", list_servers_detail)
    router.add("GET", "/v2.1/servers/{server_id}", show_server)
    router.add("PUT", "/v2.1/servers/{server_id}", update_server)
    router.add("DELETE", "/v2.1/servers/{server_id}", delete_server)
