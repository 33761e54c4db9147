"""The compute API's security group proxies until 2.35 (``os-security-groups``, ``os-security-group-rules``;
404 from 2.36) and ``GET /servers/{id}/os-security-groups`` (every microversion), as upstream: each call is
made to the network service with the caller's token and answered in Nova's older shape, which shows only
ingress rules."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import lookup
from kilonova.compute.api import security_group_lookup as groups
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.floating_ips import check_version, network_get

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
ANY_CIDR = "0.0.0.0/0"


def _headers(request: Request) -> dict[str, str]:
    return {"X-Auth-Token": request.state.context.token}


def _checked(response, ok: int, refusals: dict[int, int]):
    """The network service's answer: ``ok``, or its refusal under the status Nova gives it (``refusals``)."""
    if response.status_code in refusals:
        raise HTTPError(refusals[response.status_code], groups.neutron_message(response))
    if response.status_code != ok:
        raise groups.unavailable(response)
    return response


def _valid_id(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise HTTPError(400, "Security group id should be uuid")
    return value


# ------------------------------------------------------------------------------------------ Nova's shape

def nova_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A Neutron rule as Nova's proxy sees it: ports -1 (ICMP, others) or 1-65535 (TCP, UDP) when open."""
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if rule["protocol"] and low is None and high is None:
        low, high = (1, 65535) if rule["protocol"].upper() in ("TCP", "UDP") else (-1, -1)
    return {"id": rule["id"], "parent_group_id": rule["security_group_id"], "protocol": rule["protocol"],
            "from_port": low, "to_port": high, "group_id": rule["remote_group_id"],
            "cidr": rule.get("remote_ip_prefix") or ANY_CIDR}


def _shown_rule(rule: dict[str, Any], sources: dict[str, dict | None]) -> dict[str, Any] | None:
    shown = {"id": rule["id"], "parent_group_id": rule["parent_group_id"], "ip_protocol": rule["protocol"],
             "from_port": rule["from_port"], "to_port": rule["to_port"], "group": {}, "ip_range": {}}
    if rule["group_id"]:
        source = sources.get(rule["group_id"])
        if source is None:  # a group the caller cannot see: the rule is left out, as upstream
            return None
        shown["group"] = {"name": source["name"], "tenant_id": source["tenant_id"]}
    else:
        shown["ip_range"] = {"cidr": rule["cidr"]}
    return shown


def _shown_group(group: dict[str, Any], sources: dict[str, dict | None]) -> dict[str, Any]:
    rules = [nova_rule(r) for r in group.get("security_group_rules", []) if r["direction"] == "ingress"]
    return {"id": group["id"], "name": group["name"], "description": group["description"],
            "tenant_id": group["tenant_id"],
            "rules": [shown for shown in (_shown_rule(r, sources) for r in rules) if shown is not None]}


async def _sources(request: Request, listed: list[dict[str, Any]]) -> dict[str, dict | None]:
    """The remote groups the rules of ``listed`` name: those listed, and the others looked up once each."""
    known: dict[str, dict | None] = {g["id"]: g for g in listed}
    for group in listed:
        for rule in group.get("security_group_rules", []):
            remote = rule.get("remote_group_id")
            if remote and remote not in known:
                response = await network_get(request, f"/v2.0/security-groups/{segment(remote)}")
                known[remote] = response.json()["security_group"] if response.status_code == 200 else None
    return known


async def _respond_groups(request: Request, listed: list[dict[str, Any]]):
    sources = await _sources(request, listed)
    shown = [_shown_group(g, sources) for g in listed]
    return json_response({"security_groups": sorted(shown, key=lambda g: (g["tenant_id"], g["name"]))})


async def _respond_group(request: Request, group: dict[str, Any]):
    return json_response({"security_group": _shown_group(group, await _sources(request, [group]))})


# ------------------------------------------------------------------------------------------ groups

async def _group(request: Request, group_id: Any) -> dict[str, Any]:
    response = await network_get(request, f"/v2.0/security-groups/{segment(_valid_id(group_id))}")
    return _checked(response, 200, {404: 404}).json()["security_group"]


def _from_body(body: Any, key: str) -> dict[str, Any]:
    if not body:
        raise HTTPError(400, "The request body can't be empty")
    value = body.get(key) if isinstance(body, dict) else None
    if value is None:
        raise HTTPError(400, f"Missing parameter {key}")
    if not isinstance(value, dict):
        raise HTTPError(400, f"Invalid input for field/attribute {key}.")
    return value


def _properties(values: dict[str, Any]) -> dict[str, str]:
    checked = {}
    for name in ("name", "description"):
        value = values.get(name)
        if not isinstance(value, str):
            raise HTTPError(400, f"{name} is not a string or unicode")
        if len(value) > 255:
            raise HTTPError(400, f"{name} has more than 255 characters.")
        checked[name] = value
    return checked


async def index(request: Request):
    check_version(request)
    ctx = request.state.context
    params: dict[str, Any] = {}
    if not (ctx.is_admin and "all_tenants" in request.query_params):
        params["project_id"] = ctx.project_id
    response = await network_get(request, "/v2.0/security-groups", **params)
    if response.status_code != 200:
        raise groups.unavailable(response)
    listed = response.json()["security_groups"]
    offset, limit = _paging(request)
    return await _respond_groups(request, listed[offset:offset + limit if limit is not None else None])


def _paging(request: Request) -> tuple[int, int | None]:
    values = {}
    for name in ("offset", "limit"):
        text = request.query_params.get(name)
        if text is None:
            continue
        if not text.isdigit():
            raise HTTPError(400, f"{name} param must be an integer" if not text.lstrip("-").isdigit()
                            else f"{name} param must be positive")
        values[name] = int(text)
    return values.get("offset", 0), values.get("limit")


async def show(request: Request, group_id: str):
    check_version(request)
    return await _respond_group(request, await _group(request, group_id))


async def create(request: Request):
    check_version(request)
    values = _properties(_from_body(await read_json(request, required=False), "security_group"))
    response = await compute_api(request).network.post("/v2.0/security-groups", json={"security_group": values},
                                                       headers=_headers(request))
    # Neutron's conflicts (its quota first) are a quota refusal in Nova.
    _checked(response, 201, {409: 403, 400: 400})
    return await _respond_group(request, response.json()["security_group"])


async def update(request: Request, group_id: str):
    check_version(request)
    group = await _group(request, group_id)
    values = _properties(_from_body(await read_json(request, required=False), "security_group"))
    response = await compute_api(request).network.put(f"/v2.0/security-groups/{segment(group['id'])}",
                                                      json={"security_group": values}, headers=_headers(request))
    _checked(response, 200, {400: 400, 409: 400})
    return await _respond_group(request, response.json()["security_group"])


async def delete(request: Request, group_id: str):
    check_version(request)
    group = await _group(request, group_id)
    response = await compute_api(request).network.delete(f"/v2.0/security-groups/{segment(group['id'])}",
                                                          headers=_headers(request))
    _checked(response, 204, {409: 400, 404: 404})  # 409: in use, or the default group
    return empty_response(202)


# ------------------------------------------------------------------------------------------ rules

def _ports(protocol: str, low: Any, high: Any) -> tuple[int, int]:
    try:
        low, high = int(low), int(high)
    except (TypeError, ValueError):
        reason = ("Type and Code must be integers for ICMP protocol type" if protocol.upper() == "ICMP"
                  else "To and From ports must be integers")
        raise HTTPError(400, f"Invalid input received: {reason}") from None
    if protocol.upper() not in ("TCP", "UDP", "ICMP"):
        raise HTTPError(400, f"Invalid IP protocol {protocol}.")
    problem = None
    if protocol.upper() in ("TCP", "UDP") and low > high:
        problem = "Former value cannot be greater than the later"
    elif protocol.upper() in ("TCP", "UDP") and (low < 1 or high > 65535):
        problem = f"Valid {protocol.upper()} ports should be between 1-65535"
    elif protocol.upper() == "ICMP" and not (-1 <= low <= 255 and -1 <= high <= 255):
        problem = "For ICMP, the type:code must be valid"
    if problem:
        raise HTTPError(400, f"Invalid port range {low}:{high}. {problem}")
    return low, high


def _cidr(value: Any) -> str:
    if not value:
        return ANY_CIDR
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{value} is not a valid IP network.") from None
    net, _, length = str(value).partition("/")
    if length == "0" and net not in ("0.0.0.0", "::"):
        raise HTTPError(400, f"Bad prefix for network in cidr {value}")
    return str(value)


def _new_rule(values: dict[str, Any], group_id: str | None) -> dict[str, Any]:
    """Nova's ingress rule from the body: a source group opens every port of its protocol when none are given;
    a CIDR rule needs its protocol and ports."""
    protocol, low, high = values.get("ip_protocol"), values.get("from_port"), values.get("to_port")
    rule: dict[str, Any] = {"group_id": group_id} if group_id else {"cidr": _cidr(values.get("cidr"))}
    if group_id and low is None and high is None and isinstance(protocol, str):
        if protocol.upper() == "ICMP":
            low, high = -1, -1
        elif protocol.upper() in ("TCP", "UDP"):
            low, high = 1, 65535
    if protocol and low is not None and high is not None:
        rule["protocol"] = str(protocol)
        rule["from_port"], rule["to_port"] = _ports(str(protocol), low, high)
    elif not group_id:
        raise HTTPError(400, "Not enough parameters to build a valid rule.")
    return rule


def _neutron_rule(rule: dict[str, Any], parent_id: str) -> dict[str, Any]:
    cidr = rule.get("cidr")
    body = {"direction": "ingress", "protocol": rule.get("protocol"), "security_group_id": parent_id,
            "remote_group_id": rule.get("group_id"), "remote_ip_prefix": cidr,
            "ethertype": f"IPv{ipaddress.ip_network(cidr, strict=False).version}" if cidr else "IPv4"}
    for ours, theirs in (("from_port", "port_range_min"), ("to_port", "port_range_max")):
        if rule.get(ours) not in (None, -1):
            body[theirs] = rule[ours]
    return body


async def create_rule(request: Request):
    check_version(request)
    values = _from_body(await read_json(request, required=False), "security_group_rule")
    parent = await _group(request, values.get("parent_group_id"))
    source = None
    if values.get("group_id") is not None:
        source = await _group(request, values["group_id"])
    rule = _new_rule(values, source["id"] if source else None)
    existing = [nova_rule(r) for r in parent.get("security_group_rules", []) if r["direction"] == "ingress"]
    keys = ("group_id", "cidr", "from_port", "to_port", "protocol")
    if any(all(old.get(k) == rule.get(k) for k in keys) for old in existing):
        raise HTTPError(400, f"This rule already exists in group {parent['id']}")
    response = await compute_api(request).network.post(
        "/v2.0/security-group-rules", json={"security_group_rules": [_neutron_rule(rule, parent["id"])]},
        headers=_headers(request))
    _checked(response, 201, {409: 403, 400: 400, 404: 404})
    created = nova_rule(response.json()["security_group_rules"][0])
    sources = {source["id"]: source} if source else {}
    return json_response({"security_group_rule": _shown_rule(created, sources)})


async def delete_rule(request: Request, rule_id: str):
    check_version(request)
    _checked(await network_get(request, f"/v2.0/security-group-rules/{segment(_valid_id(rule_id))}"), 200,
             {404: 404})
    response = await compute_api(request).network.delete(f"/v2.0/security-group-rules/{segment(rule_id)}",
                                                          headers=_headers(request))
    if response.status_code not in (204, 404):
        raise groups.unavailable(response)
    return empty_response(202)


# ------------------------------------------------------------------------------------------ a server's groups

async def server_groups(request: Request, server_id: str):
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    ports = await groups.server_ports(request, ref.uuid)
    ids = list(dict.fromkeys(g for port in ports for g in port.get("security_groups", [])))
    found = await groups.groups_by_id(request, ids)
    return await _respond_groups(request, [found[g] for g in ids if g in found])


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-security-groups", index)
    router.add("POST", "/v2.1/os-security-groups", create)
    router.add("GET", "/v2.1/os-security-groups/{group_id}", show)
    router.add("PUT", "/v2.1/os-security-groups/{group_id}", update)
    router.add("DELETE", "/v2.1/os-security-groups/{group_id}", delete)
    router.add("POST", "/v2.1/os-security-group-rules", create_rule)
    router.add("DELETE", "/v2.1/os-security-group-rules/{rule_id}", delete_rule)
    router.add("GET", "/v2.1/servers/{server_id}/os-security-groups", server_groups)
