"""A property-based hostile client for every Kilonova API, driven by the APIs' own route tables and
JSON schemas (issue 12: no 5xx, no traceback, from any request).

Requests are drawn with hypothesis: a routed (method, path) of a service, its path parameters from
ids the cloud really has or from junk, a query string from the APIs' vocabulary, a microversion, a
token (admin, member, none or garbage), and a body drawn from one of the service's request schemas
with any part swapped for hostile values, or plain malformed bytes. Each answer must be below 500
(501, upstream's answer for what a driver cannot do, is allowed) and arrive.

``tests/functional/test_hostile_fuzz.py`` runs a bounded number of examples; ``benchmarks/fuzz.py``
runs many more and prints figures.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

SERVICES = ("identity", "compute", "placement", "image", "network", "block-storage")
PACKAGES = {"block-storage": "volume"}   # catalog type -> package, where they differ
# Writes that would lock the fuzzer itself out (deleting or disabling its users, projects, roles,
# the service catalog, or changing a password), so that later examples would test nothing.
_SELF_HARM = re.compile(r"^(DELETE|PATCH|PUT) /v3/|^POST /v3/users/\{user_id\}/password")
# Unlimited quotas: the seeded creates keep reaching past the quota check however many succeeded.
CLOUD_CONFIG = {"quota": {"instances": "-1", "cores": "-1", "ram": "-1"},
                "volume": {"quota_volumes": "-1", "quota_gigabytes": "-1"}}
ALLOWED_5XX = {501}   # upstream's answer for what a driver does not implement

_SCHEMA_PACKAGES = {
    "identity": ["kilonova.identity.api"],
    "compute": ["kilonova.compute.api", "kilonova.compute.api.server_action_handlers"],
    "placement": ["kilonova.placement.handlers"],
    "image": ["kilonova.image"],
    "network": ["kilonova.network"],
    "block-storage": ["kilonova.volume"],
}
VERSIONS = {
    "compute": ["2.1", "2.7", "2.19", "2.37", "2.42", "2.52", "2.60", "2.67", "2.74", "2.90", "2.96", "2.102",
                "2.104", "latest", "2.999", "x.y"],
    "placement": ["1.0", "1.10", "1.14", "1.20", "1.28", "1.36", "1.39", "latest", "1.999", "nope"],
    "block-storage": ["3.0", "3.27", "3.44", "3.60", "3.67", "3.71", "latest", "3.72", "x.y"],
}
HEADER_NAMES = {"block-storage": "volume"}   # OpenStack-API-Version's service name, where not the type
QUERY_KEYS = ["limit", "marker", "sort_key", "sort_dir", "sort", "name", "status", "all_tenants", "all_projects",
              "changes-since", "changes-before", "fields", "created_at", "updated_at", "visibility", "member_status",
              "tag", "tags", "size_min", "size_max", "resources", "required", "member_of", "in_tree", "uuid",
              "project_id", "tenant_id", "user_id", "host", "ip", "flavor", "image", "deleted", "locked",
              "is_public", "minDisk", "minRam", "domain_id", "enabled", "network_id", "device_id", "shared",
              "router:external", "cidr", "ip_version", "mac_address", "hypervisor_hostname_pattern", "detailed",
              "with_servers", "start", "end", "type", "binary", "zone", "nocatalog", "scope.system", "group_by",
              "tags-any", "not-tags", "not-tags-any", "ip6", "node", "hostname", "key_name", "availability_zone"]
HOSTILE_TEXT = ["", " ", "  lead", "trail  ", "a\nb", "\t", "\ud800", "\x00", "é", "💥", "%", "%00", "../..",
                "a/b", "?", "#", "'", '"', "\\", ";--", "*", "gte:garbage", "in:", "!", ":::", "nova:compute1",
                "-1", "0", "1", "99999999999999999999999", "1e999", "NaN", "null", "true", "maybe", "x" * 300,
                "00000000-0000-0000-0000-000000000000", "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"]
HOSTILE_NUMBERS = [-1, 0, 1, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 70, -2 ** 70, 1.5, -0.0, 1e308]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))
scalar = st.one_of(st.none(), st.booleans(), st.sampled_from(HOSTILE_NUMBERS), st.integers(-10, 10 ** 6), text)
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(text, inner, max_size=4), max_leaves=16)
raw_bodies = st.sampled_from([b"{", b"[" * 2000, b"\xff\xfe{}", b'{"a": 1} trailing', b"\xef\xbb\xbf{}", b"null",
                              b'"just a string"', b"[]", b"{}", b'{"a": "\\ud800"}', b"{" * 40 + b"}" * 40])


# ---------------------------------------------------------------- schemas -> strategies

def from_schema(schema: object, depth: int = 0) -> st.SearchStrategy:
    """Values shaped by a JSON schema, any part of which may be hostile instead (1 time in 8)."""
    shaped = _shaped(schema, depth) if isinstance(schema, dict) and depth < 8 else json_value
    return st.one_of(shaped, shaped, shaped, shaped, shaped, shaped, shaped, json_value)


def _shaped(schema: dict, depth: int) -> st.SearchStrategy:
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([from_schema(branch, depth + 1) for branch in schema[key]])
    if "allOf" in schema:
        return from_schema(schema["allOf"][0], depth + 1)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kinds = schema.get("type")
    if kinds is None:
        kinds = "object" if "properties" in schema else "any"
    if isinstance(kinds, list):
        return st.one_of([_of_type(schema, kind, depth) for kind in kinds])
    return _of_type(schema, kinds, depth)


def _of_type(schema: dict, kind: str, depth: int) -> st.SearchStrategy:
    if kind == "object":
        return _object(schema, depth)
    if kind == "array":
        items = schema.get("items", {})
        element = from_schema(items[0] if isinstance(items, list) and items else items, depth + 1)
        low = schema.get("minItems", 0)
        return st.lists(element, min_size=min(low, 3), max_size=max(min(low, 3), min(schema.get("maxItems", 4), 4)))
    if kind == "string":
        return _string(schema)
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        bounded = st.integers(min_value=low, max_value=high) if kind == "integer" else st.floats(
            min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
        return st.one_of(bounded, st.sampled_from(HOSTILE_NUMBERS))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_value


def _object(schema: dict, depth: int) -> st.SearchStrategy:
    properties = schema.get("properties") or {}
    required = [name for name in schema.get("required", []) if name in properties]
    optional = [name for name in properties if name not in required]
    extra = st.dictionaries(text, json_value, max_size=1) if schema.get("additionalProperties") is not False \
        else st.just({})
    patterned = [_pattern_keys(pattern, value, depth)
                 for pattern, value in (schema.get("patternProperties") or {}).items()]

    @st.composite
    def build(draw) -> dict:
        chosen = required + [name for name in optional if draw(st.integers(0, 2)) == 0]
        value = {name: draw(from_schema(properties[name], depth + 1)) for name in chosen}
        for keys in patterned:
            value.update(draw(keys))
        value.update(draw(extra))
        return value
    return build()


def _pattern_keys(pattern: str, schema: object, depth: int) -> st.SearchStrategy:
    try:
        keys = st.from_regex(pattern, fullmatch=True).filter(lambda k: len(k) < 40)
    except Exception:  # noqa: BLE001 - a pattern hypothesis cannot generate from: plain text keys
        keys = text
    return st.dictionaries(keys, from_schema(schema, depth + 1), max_size=3)


_FORMATS = {"uuid": st.uuids().map(str), "ipv4": st.ip_addresses(v=4).map(str),
            "ipv6": st.ip_addresses(v=6).map(str), "date-time": st.datetimes().map(lambda d: d.isoformat() + "Z"),
            "uri": st.just("http://example.invalid/x")}


# Ids and names the cloud has (filled by harvest_ids): strings drawn from them reach past the lookups.
KNOWN: list[str] = []


def _string(schema: dict) -> st.SearchStrategy:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 40), 300)
    strategies = [st.text(min_size=low, max_size=max(low, min(high, 40))), text]
    if KNOWN:
        strategies += [st.sampled_from(KNOWN)] * 2
    if "pattern" in schema:
        try:
            strategies.append(st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= high))
        except Exception:  # noqa: BLE001 - lookarounds and the like: the other strategies stand in
            pass
    return st.one_of(strategies)


# ---------------------------------------------------------------- what the APIs offer

def routes(service: str) -> list[tuple[str, str]]:
    """(method, path template) of every route of ``service``, less the fuzzer's own lock-outs."""
    from kilonova.common.http import Router

    if service == "compute":
        from kilonova.compute.api.app import build_router
        router = build_router()
    elif service == "identity":
        from kilonova.identity.api.app import build_router
        router = build_router()
    elif service == "placement":
        from kilonova.placement.app import build_router
        router = build_router()
    else:
        module = importlib.import_module(f"kilonova.{PACKAGES.get(service, service)}.app")
        router = Router()
        for resource in module.RESOURCE_MODULES:
            resource.register(router)
    return [(method, template) for method, template in router.endpoints()
            if method != "HEAD" and not _SELF_HARM.match(f"{method} {template}")]


def body_schemas(service: str) -> list[dict]:
    """The request schemas the service's modules declare (module-level JSON schemas of objects)."""
    found: dict[int, dict] = {}
    for package_name in _SCHEMA_PACKAGES[service]:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, dict) and value.get("type") == "object" and value.get("properties"):
                    found[id(value)] = value
    if service == "image":   # Glance's published schemas: an image, a member, and a patch of either
        from kilonova.image import schemas
        for make in schemas.SCHEMAS.values():
            found[id(make)] = make()
        patch = {"type": "array", "items": {"type": "object", "required": ["op", "path"], "properties": {
            "op": {"enum": ["add", "replace", "remove", "copy", "move", "test"]},
            "path": {"type": "string", "pattern": "^/[a-z_/0-9-]*$"}, "value": {}}}}
        found[id(patch)] = patch
    if service == "network":   # Neutron's attribute maps: {"network": {...}} and so on
        for resource in ("network", "subnet", "port"):
            attrs = importlib.import_module(f"kilonova.network.{resource}s").ATTRS
            schema = {"type": "object", "properties": {resource: {
                "type": "object", "properties": {name: {} for name in attrs}}}}
            found[id(schema)] = schema
    if service == "block-storage":   # Cinder's create and update bodies, attachments and volume actions
        fields = {"size": {"type": "integer"}, "name": {"type": "string"}, "description": {"type": "string"},
                  "volume_type": {"type": "string"}, "availability_zone": {"type": "string"},
                  "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}
        fields["volume_id"] = {"type": "string"}
        fields.update({"volume_uuid": {"type": "string"}, "instance_uuid": {"type": "string"},
                       "connector": {"type": "object", "properties": {"ip": {"type": "string"},
                                                                      "host": {"type": "string"}}},
                       "imageRef": {"type": "string"}, "status": {"type": "string"}, "bootable": {}})
        for wrapper in ("volume", "snapshot", "volume_type", "quota_set", "metadata", "os-extend", "attachment",
                        "os-reset_status", "os-attach", "os-initialize_connection"):
            schema = {"type": "object", "properties": {wrapper: {"type": "object", "properties": fields}}}
            found[id(schema)] = schema
    if service == "compute":
        from kilonova.compute.api import server_schemas
        for version in ((2, 1), (2, 37), (2, 52), (2, 67), (2, 74), (2, 90), (2, 96)):
            for schema in (server_schemas.create(version), server_schemas.update(version)):
                found[id(schema)] = schema
    return list(found.values())


# ---------------------------------------------------------------- requests

def roots(urls: dict[str, str]) -> dict[str, str]:
    """Each service's scheme://host:port from its catalog URL (route templates carry the version)."""
    return {service: "/".join(url.split("/")[:3]) for service, url in urls.items()}


@dataclass
class Target:
    """What the fuzzer knows of a running cloud."""
    roots: dict[str, str]                  # service -> http://host:port
    tokens: dict[str, str]                 # "admin" / "member" -> token
    ids: list[str] = field(default_factory=list)
    # (service, method, path, body) of requests that succeed: mutated one part at a time, they reach
    # the checks behind validation and the lookups, where random bodies seldom get.
    seeds: list[tuple[str, str, str, object]] = field(default_factory=list)
    # The admin token's project: what a {project_id} in a path (block storage) must be to get past the
    # URL check to the handlers behind it.
    project: str | None = None


@dataclass
class Outcome:
    service: str
    method: str
    url: str
    status: int | None
    detail: str


def harvest_ids(target: Target) -> None:
    """Ids and names the cloud really has, read from its list routes, for path parameters."""
    seen: set[str] = set()
    with httpx.Client(timeout=30, headers={"X-Auth-Token": target.tokens["admin"]}) as client:
        for service in SERVICES:
            for method, template in routes(service):
                if method != "GET" or "{" in template:
                    continue
                try:
                    response = client.get(target.roots[service] + template)
                except httpx.HTTPError:
                    continue
                if response.headers.get("content-type", "").startswith("application/json"):
                    _collect(response.json(), seen)
    target.ids = sorted(seen)[:400]
    KNOWN[:] = target.ids


def add_seeds(target: Target) -> None:
    """Valid creates on every API, with the ids of the cloud's default image and network."""
    with httpx.Client(timeout=30, headers={"X-Auth-Token": target.tokens["admin"]}) as client:
        images = client.get(target.roots["image"] + "/v2/images").json()["images"]
        networks = client.get(target.roots["network"] + "/v2.0/networks").json()["networks"]
        project = client.get(target.roots["identity"] + "/v3/auth/tokens",
                             headers={"X-Subject-Token": target.tokens["admin"]}).json()["token"]["project"]["id"]
    target.project = project
    image = next(i["id"] for i in images if i["name"] == "kilonova-tiny")
    network = next(n["id"] for n in networks if n["name"] == "private")
    server = _active_server(target, image, network)
    action = f"/v2.1/servers/{server}/action"
    target.seeds = [(("compute", "POST", action, body)) for body in (
        {"os-getConsoleOutput": {"length": 10}}, {"reboot": {"type": "SOFT"}}, {"os-stop": None},
        {"os-start": None}, {"createImage": {"name": "fz", "metadata": {"k": "v"}}}, {"resize": {"flavorRef": "2"}},
        {"rebuild": {"imageRef": image, "name": "fz"}}, {"rescue": {"rescue_image_ref": image}}, {"lock": None},
        {"changePassword": {"adminPass": "fz"}}, {"os-getVNCConsole": {"type": "novnc"}},
        {"os-migrateLive": {"host": None, "block_migration": "auto"}}, {"migrate": None},
        {"createBackup": {"name": "fz", "backup_type": "daily", "rotation": 1}}, {"shelve": None},
        {"os-resetState": {"state": "active"}}, {"evacuate": {}})]
    target.seeds += [
        ("compute", "PUT", f"/v2.1/servers/{server}/metadata", {"metadata": {"k": "v"}}),
        ("compute", "PUT", f"/v2.1/servers/{server}", {"server": {"name": "fz", "description": "d"}}),
        ("compute", "POST", f"/v2.1/servers/{server}/remote-consoles", {"remote_console": {
            "protocol": "vnc", "type": "novnc"}}),
        ("compute", "POST", "/v2.1/os-server-external-events", {"events": [
            {"name": "network-changed", "server_uuid": server}]}),
        ("compute", "POST", "/v2.1/servers", {"server": {"name": "fz", "flavorRef": "1", "imageRef": image,
                                                          "networks": [{"uuid": network}], "metadata": {"k": "v"}},
                                               "os:scheduler_hints": {}}),
        ("compute", "POST", "/v2.1/flavors", {"flavor": {"name": "fz", "ram": 64, "vcpus": 1, "disk": 0}}),
        ("compute", "POST", "/v2.1/os-keypairs", {"keypair": {"name": "fz"}}),
        ("compute", "POST", "/v2.1/os-aggregates", {"aggregate": {"name": "fz", "availability_zone": "fz"}}),
        ("network", "POST", "/v2.0/networks", {"network": {"name": "fz", "shared": False}}),
        ("network", "POST", "/v2.0/subnets", {"subnet": {"network_id": network, "cidr": "10.77.0.0/24",
                                                          "ip_version": 4, "allocation_pools": [
                                                              {"start": "10.77.0.10", "end": "10.77.0.20"}]}}),
        ("network", "POST", "/v2.0/ports", {"port": {"network_id": network, "name": "fz", "admin_state_up": True}}),
        ("image", "POST", "/v2/images", {"name": "fz", "disk_format": "qcow2", "container_format": "bare",
                                         "visibility": "private", "tags": ["a"], "min_ram": 0}),
        ("block-storage", "POST", f"/v3/{project}/volumes", {"volume": {"size": 1, "name": "fz",
                                                                       "metadata": {"k": "v"}}}),
        ("block-storage", "POST", f"/v3/{project}/snapshots", {"snapshot": {"volume_id": "", "name": "fz"}}),
        ("block-storage", "POST", f"/v3/{project}/types", {"volume_type": {"name": "fz",
                                                                          "extra_specs": {"k": "v"}}}),
        ("block-storage", "POST", f"/v3/{project}/attachments", {"attachment": {
            "volume_uuid": "", "instance_uuid": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1ab",
            "connector": {"ip": "127.0.0.1", "host": "fz", "mountpoint": "/dev/vdb"}}}),
        ("placement", "POST", "/resource_providers", {"name": "fz", "uuid": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"}),
        # Lists every caller may read (their bodies are ignored): each API answers some of the draws with a
        # success however its route table grows, so "reached past authentication" does not hang on luck.
        ("placement", "GET", "/resource_providers", {}), ("placement", "GET", "/traits", {}),
        ("block-storage", "GET", f"/v3/{project}/volumes/detail", {}), ("network", "GET", "/v2.0/networks", {}),
        ("compute", "GET", "/v2.1/flavors/detail", {}), ("image", "GET", "/v2/images", {}),
        ("identity", "GET", "/v3/projects", {}),
        ("identity", "POST", "/v3/projects", {"project": {"name": "fz", "domain_id": "default", "enabled": True}}),
        ("identity", "POST", "/v3/users", {"user": {"name": "fz", "domain_id": "default", "password": "fz-pass"}}),
    ]


def _active_server(target: Target, image: str, network: str) -> str:
    """A server of the fuzzer's own, booted and waited for: the server actions' seeds act on it."""
    with httpx.Client(timeout=30, headers={"X-Auth-Token": target.tokens["admin"]}) as client:
        created = client.post(target.roots["compute"] + "/v2.1/servers", json={"server": {
            "name": "fz-target", "flavorRef": "1", "imageRef": image, "networks": [{"uuid": network}]}})
        server = created.json()["server"]["id"]
        for _ in range(120):
            shown = client.get(f"{target.roots['compute']}/v2.1/servers/{server}").json()["server"]
            if shown["status"] != "BUILD":
                break
            time.sleep(0.25)
    return server


@st.composite
def mutated(draw, value: object) -> object:
    """``value`` with one part replaced by a hostile one, removed, or an extra key added."""
    if not isinstance(value, (dict, list)) or not value or draw(st.integers(0, 5)) == 0:
        return draw(json_value)
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = draw(st.sampled_from(keys))
    copy = dict(value) if isinstance(value, dict) else list(value)
    action = draw(st.integers(0, 9))
    if action == 0 and isinstance(copy, dict):
        del copy[key]
    elif action == 1 and isinstance(copy, dict):
        copy[draw(text)] = draw(json_value)
    else:
        copy[key] = draw(mutated(value[key]))
    return copy


def _collect(value: object, seen: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "uuid", "name") and isinstance(item, (str, int)):
                seen.add(str(item))
            _collect(item, seen)
    elif isinstance(value, list):
        for item in value:
            _collect(item, seen)


@st.composite
def seeded_requests(draw, target: Target, service: str):
    """A seed of ``service`` with one part mutated, as the admin, at a random microversion."""
    _, method, path, body = draw(st.sampled_from([seed for seed in target.seeds if seed[0] == service]))
    headers = {"X-Auth-Token": target.tokens["admin"], "Content-Type": "application/json",
               "Accept": "application/json"}
    if service in VERSIONS:
        headers["OpenStack-API-Version"] = \
            f"{HEADER_NAMES.get(service, service)} {draw(st.sampled_from(VERSIONS[service]))}"
    content = json.dumps(draw(mutated(body)), ensure_ascii=True).encode()
    return service, method, target.roots[service] + path, headers, content


@st.composite
def requests(draw, target: Target, service: str, endpoints: list[tuple[str, str]], schemas: list[dict]):
    if any(seed[0] == service for seed in target.seeds) and draw(st.integers(0, 2)) == 0:
        return draw(seeded_requests(target, service))
    method, template = draw(st.sampled_from(endpoints))
    known = st.sampled_from(target.ids) if target.ids else text
    def fill(match) -> str:
        if match.group(0) == "{project_id}" and target.project:
            return target.project   # the caller's own project: past the URL check (another's: test_volume_*)
        return quote(str(draw(st.one_of(known, known, known, text))), safe="", errors="surrogatepass")
    path = re.sub(r"\{\w+\}", fill, template)
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS) | text, text), max_size=4))
    headers = {}
    who = draw(st.sampled_from(["admin"] * 5 + ["member"] * 2 + [None, "garbage"]))
    if who in target.tokens:
        headers["X-Auth-Token"] = target.tokens[who]
    elif who == "garbage":
        headers["X-Auth-Token"] = draw(st.sampled_from(["gAAAAAnope", "x" * 5000, "t\u00f6k"]))
    if service in VERSIONS:
        headers["OpenStack-API-Version"] = \
            f"{HEADER_NAMES.get(service, service)} {draw(st.sampled_from(VERSIONS[service]))}"
    headers["Accept"] = draw(st.sampled_from(["application/json", "*/*", "text/html", "text/plain", "garbage"]))
    body = None
    if method in ("POST", "PUT", "PATCH"):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            body = draw(raw_bodies)
        else:
            fitting = schemas_for(template, schemas)
            value = draw(from_schema(draw(st.sampled_from(fitting))) if fitting and kind > 2 else json_value)
            body = json.dumps(value, ensure_ascii=True).encode()
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json"] * 6 + ["application/openstack-images-v2.1-json-patch", "application/octet-stream",
                                        "text/plain", "application/json; charset=latin-1"]))
    url = target.roots[service] + path + ("?" + urlencode(query, errors="surrogatepass") if query else "")
    return service, method, url, headers, body


def schemas_for(template: str, schemas: list[dict]) -> list[dict]:
    """The schemas likely meant for a route: those whose top-level key the path names (``server`` for
    ``/servers``), actions' for an ``/action`` path; all of them when none fits."""
    words = set(re.split(r"[/_-]", template.lower()))
    if template.endswith("/action"):
        fitting = [schema for schema in schemas if len(schema.get("properties") or {}) == 1]
    else:
        fitting = [schema for schema in schemas if any(
            key.lower() in words or key.lower() + "s" in words for key in schema.get("properties") or {})]
    fitting += [schema for schema in schemas if schema.get("type") == "array"]   # a JSON patch fits any
    return fitting or schemas


def send(client: httpx.Client, service: str, method: str, url: str, headers: dict, body: bytes | None) -> Outcome:
    """One request; its outcome is a failure when it is a 5xx (but 501) or got no answer."""
    try:
        header_bytes = {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in headers.items()}
        response = client.request(method, url, headers=header_bytes, content=body)
    except httpx.HTTPError as exc:
        return Outcome(service, method, url, None, f"no answer: {type(exc).__name__}: {exc}")
    return Outcome(service, method, url, response.status_code, response.text[:300])


def failed(outcome: Outcome) -> bool:
    return outcome.status is None or (outcome.status >= 500 and outcome.status not in ALLOWED_5XX)


def run(target: Target, examples: int, *, derandomize: bool = False, services=SERVICES) -> list[Outcome]:
    """``examples`` requests drawn across ``services``; every outcome, in order."""
    endpoints = {service: routes(service) for service in services}
    schemas = {service: body_schemas(service) for service in services}
    drawn = st.sampled_from(list(services)).flatmap(
        lambda service: requests(target, service, endpoints[service], schemas[service]))
    outcomes: list[Outcome] = []
    with httpx.Client(timeout=30) as client:
        @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(drawn)
        def one(request) -> None:
            outcomes.append(send(client, *request))
        one()
    return outcomes
