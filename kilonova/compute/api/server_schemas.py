"""Request body schemas of POST and PUT /servers, one per microversion (built once, then cached).

Each version step below mirrors a line of the microversion changelog; a field
outside its versions is refused with 400 like any unknown field.
"""
from __future__ import annotations

import functools
from typing import Any

from kilonova.compute.api import validation

MAX_INT = 0x7FFFFFFF
TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
MAX_TAGS = 50  # per server (2.26)
_BOOLEAN = validation.BOOLEAN
# Files to inject (until 2.56): upstream's item schema.
PERSONALITY = {"type": "array", "items": {"type": "object", "properties": {
    "path": {"type": "string"}, "contents": {"type": "string", "pattern": r"^[A-Za-z0-9+/]*={0,2}$"}},
    "additionalProperties": False}}
# At most 50 distinct certificate ids (2.63).
TRUSTED_CERTS = {"type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1}}
# A host, node or (from 2.94) server hostname as an FQDN; underscores allowed, as upstream allows them.
FQDN = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[a-zA-Z0-9-._]*$"}
# A server hostname (2.90): one DNS label.
HOSTNAME = {"type": "string", "minLength": 2, "maxLength": 63, "pattern": "^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$"}
# One block device of block_device_mapping_v2 (legacy fields plus the v2 ones), as upstream lists them.
_BDM_V2 = {
    "virtual_name": {"type": "string", "maxLength": 255},
    "volume_id": validation.UUID,
    "snapshot_id": validation.UUID,
    "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT},
    "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
    "delete_on_termination": _BOOLEAN,
    "no_device": {},
    "connection_info": {"type": "string", "maxLength": 16777215},
    "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
    "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
    "image_id": validation.UUID,
    "destination_type": {"type": "string", "enum": ["local", "volume"]},
    "guest_format": {"type": "string", "maxLength": 255},
    "device_type": {"type": "string", "maxLength": 255},
    "disk_bus": {"type": "string", "maxLength": 255},
    "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
}


def _network_item(version: tuple[int, int]) -> dict:
    props: dict[str, Any] = {"fixed_ip": {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                             "port": dict(validation.UUID, type=["string", "null"]), "uuid": {"type": "string"}}
    if version >= (2, 37):
        props["uuid"] = validation.UUID
    # Network tags came in 2.32, were lost with 2.37's new networks schema and restored in 2.42.
    if (2, 32) <= version < (2, 37) or version >= (2, 42):
        props["tag"] = TAG
    return {"type": "object", "properties": props, "additionalProperties": False}


def _bdm_v2(version: tuple[int, int]) -> dict:
    props = dict(_BDM_V2)
    if version == (2, 32) or version >= (2, 42):  # upstream let 2.32 alone tag devices, then 2.42 and later
        props["tag"] = TAG
    if version >= (2, 67):
        props["volume_type"] = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
    return {"type": "array", "items": {"type": "object", "properties": props, "additionalProperties": False}}


# os:scheduler_hints as upstream validates it; other keys pass (upstream relaxed the hints to any key).
HINTS = {"type": "object", "additionalProperties": True, "properties": {
    "group": validation.UUID,
    "different_host": {"oneOf": [validation.UUID, {"type": "array", "items": validation.UUID}]},
    "same_host": {"type": ["string", "array"], "items": validation.UUID},
    "query": {"type": ["string", "object"]},
    "target_cell": validation.NAME,
    "different_cell": {"type": ["string", "array"], "items": {"type": "string"}},
    "build_near_host_ip": {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    "cidr": {"type": "string", "pattern": "^/[0-9a-f.:]+$"},
}}


@functools.lru_cache(maxsize=None)
def create(version: tuple[int, int]) -> dict:
    networks: dict[str, Any] = {"type": "array", "items": _network_item(version)}
    if version >= (2, 37):
        networks = {"oneOf": [networks, {"type": "string", "enum": ["none", "auto"]}]}
    props: dict[str, Any] = {
        "name": validation.NAME,
        "imageRef": {"type": "string"},
        "flavorRef": {"type": ["string", "integer"], "minLength": 1},
        "adminPass": {"type": "string"},
        "metadata": validation.METADATA,
        "networks": networks,
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        "accessIPv4": {"type": "string", "format": "ipv4"},
        "accessIPv6": {"type": "string", "format": "ipv6"},
        "key_name": validation.NAME,
        "availability_zone": validation.NAME,
        "min_count": validation.POSITIVE_INT,
        "max_count": validation.POSITIVE_INT,
        "return_reservation_id": _BOOLEAN,
        "security_groups": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}}, "additionalProperties": False}},
        "user_data": {"type": "string", "maxLength": 65535},
        "config_drive": _BOOLEAN,
        "block_device_mapping_v2": _bdm_v2(version),
    }
    if version < (2, 57):
        props["personality"] = PERSONALITY
    if version >= (2, 19):
        props["description"] = validation.DESCRIPTION
    if version >= (2, 52):
        props["tags"] = {"type": "array", "items": TAG, "maxItems": MAX_TAGS}
    if version >= (2, 63):
        props["trusted_image_certificates"] = TRUSTED_CERTS
    if version >= (2, 74):
        props["host"] = FQDN
        props["hypervisor_hostname"] = FQDN
    if version >= (2, 90):
        props["hostname"] = FQDN if version >= (2, 94) else HOSTNAME
    required = ["name", "flavorRef"] + (["networks"] if version >= (2, 37) else [])
    server = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"type": "object", "properties": {"server": server, "os:scheduler_hints": HINTS,
                                             "OS-SCH-HNT:scheduler_hints": HINTS},
            "required": ["server"], "additionalProperties": False}


@functools.lru_cache(maxsize=None)
def update(version: tuple[int, int]) -> dict:
    props: dict[str, Any] = {"name": validation.NAME,
                             "accessIPv4": {"type": "string", "format": "ipv4"},
                             "accessIPv6": {"type": "string", "format": "ipv6"},
                             "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]}}
    if version >= (2, 19):
        props["description"] = validation.DESCRIPTION
    if version >= (2, 90):
        props["hostname"] = FQDN if version >= (2, 94) else HOSTNAME
    if version >= (2, 104):  # pin to the zone the server is in, or unpin with null
        props["pinned_availability_zone"] = {"oneOf": [validation.NAME, {"type": "null"}]}
    server = {"type": "object", "properties": props, "additionalProperties": False}
    return {"type": "object", "properties": {"server": server}, "required": ["server"], "additionalProperties": False}
