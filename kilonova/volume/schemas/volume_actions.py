"""``POST /volumes/{id}/action``: the whole body of each action (one key, the action's name). Actions without
arguments (os-reserve, os-force_delete ...) have none, as upstream."""
from __future__ import annotations

import copy

from kilonova.volume.schemas import parameters as P


def _action(name: str, properties: dict, required: tuple = (), **extra) -> dict:
    inner = {"type": "object", "properties": properties, **({"required": list(required)} if required else {}),
             **extra, "additionalProperties": False}
    return P.body(name, inner)


EXTEND = _action("os-extend", {"new_size": P.VOLUME_SIZE}, ("new_size",))
EXTEND_COMPLETION = _action("os-extend_volume_completion", {"error": P.BOOLEAN}, ("error",))
ATTACH = _action("os-attach", {"instance_uuid": P.UUID,
                               "mountpoint": {"type": "string", "minLength": 1, "maxLength": 255},
                               "host_name": {"type": "string", "maxLength": 255},
                               "mode": {"type": "string", "enum": ["rw", "ro"]}},
                 ("mountpoint",), anyOf=[{"required": ["instance_uuid"]}, {"required": ["host_name"]}])
DETACH = P.body("os-detach", {"type": ["object", "null"],
                              # null allowed for older callers
                              "properties": {"attachment_id": P.UUID_OR_NULL}, "additionalProperties": False})
RETYPE = _action("os-retype", {"new_type": {"type": "string"},
                               "migration_policy": {"type": ["string", "null"], "enum": ["on-demand", "never"]}},
                 ("new_type",))
SET_BOOTABLE = _action("os-set_bootable", {"bootable": P.BOOLEAN}, ("bootable",))
READONLY = _action("os-update_readonly_flag", {"readonly": P.BOOLEAN}, ("readonly",))
UPLOAD_IMAGE = _action("os-volume_upload_image", {
    "image_name": {"type": "string", "minLength": 1, "maxLength": 255}, "force": P.BOOLEAN,
    "disk_format": {"type": "string", "enum": ["raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop"]},
    "container_format": P.CONTAINER_FORMAT}, ("image_name",))
UPLOAD_IMAGE_3_1 = copy.deepcopy(UPLOAD_IMAGE)
UPLOAD_IMAGE_3_1["properties"]["os-volume_upload_image"]["properties"].update(
    visibility={"type": "string", "enum": ["community", "public", "private", "shared"]}, protected=P.BOOLEAN)
UPLOAD_IMAGE_BY_VERSION = (((3, 0), UPLOAD_IMAGE), ((3, 1), UPLOAD_IMAGE_3_1))
INITIALIZE_CONNECTION = _action("os-initialize_connection", {"connector": {"type": ["object", "string"]}},
                                ("connector",))
TERMINATE_CONNECTION = _action("os-terminate_connection", {"connector": {"type": ["string", "object", "null"]}},
                               ("connector",))
# admin: the body's own check (one of the three given) comes before its fields'
RESET_STATUS = P.body("os-reset_status", {
    "type": "object", "format": "validate_volume_reset_body",
    "properties": {"status": {"type": ["string", "null"], "format": "volume_status"},
                   "attach_status": {"type": ["string", "null"], "format": "volume_attach_status"},
                   "migration_status": {"type": ["string", "null"], "format": "volume_migration_status"}},
    "additionalProperties": False})
SET_IMAGE_METADATA = _action("os-set_image_metadata", {"metadata": P.IMAGE_METADATA}, ("metadata",))
UNSET_IMAGE_METADATA = _action("os-unset_image_metadata",
                               {"key": {"type": "string", "minLength": 1, "maxLength": 255}}, ("key",))
SHOW_IMAGE_METADATA = P.body("os-show_image_metadata", {})
