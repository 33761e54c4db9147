"""JSON schemas of Glance v2 (``/v2/schemas/...``): glanceclient reads them to build its
commands and validate requests; the API validates image bodies against them too."""
from __future__ import annotations

import copy

from kilonova.common.http import HTTPError, json_response

DISK_FORMATS = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"]
CONTAINER_FORMATS = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
VISIBILITIES = ["community", "public", "private", "shared"]
STATUSES = ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
            "pending_delete", "deactivated"]
UUID_PATTERN = ("^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                "-([0-9a-fA-F]){12}$")


def _ro(kind, description, **extra):
    return {"type": kind, "readOnly": True, "description": description, **extra}


def _base(description: str, kind="string", **extra) -> dict:
    """A well-known optional property (Glance's ``schema-image.json``)."""
    return {"type": kind, "description": description, "is_base": False, **extra}


CORE_PROPERTIES: dict[str, dict] = {
    "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
    "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
    "status": _ro("string", "Status of the image", enum=STATUSES),
    "visibility": {"type": "string", "description": "Scope of image accessibility", "enum": VISIBILITIES},
    "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
    "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
    "checksum": _ro(["null", "string"], "md5 hash of image contents.", maxLength=32),
    "os_hash_algo": _ro(["null", "string"], "Algorithm to calculate the os_hash_value", maxLength=64),
    "os_hash_value": _ro(["null", "string"], "Hexdigest of the image contents using the algorithm "
                         "specified by the os_hash_algo", maxLength=128),
    "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
    "size": _ro(["null", "integer"], "Size of image file in bytes"),
    "virtual_size": _ro(["null", "integer"], "Virtual size of image in bytes"),
    "container_format": {"type": ["null", "string"], "description": "Format of the container",
                         "enum": [None] + CONTAINER_FORMATS},
    "disk_format": {"type": ["null", "string"], "description": "Format of the disk",
                    "enum": [None] + DISK_FORMATS},
    "created_at": _ro("string", "Date and time of image registration"),
    "updated_at": _ro("string", "Date and time of the last image modification"),
    "tags": {"type": "array", "description": "List of strings related to the image",
             "items": {"type": "string", "maxLength": 255}},
    "direct_url": _ro("string", "URL to access the image file kept in external store"),
    "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image.", "minimum": 0},
    "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image.",
                 "minimum": 0},
    "self": _ro("string", "An image self url"),
    "file": _ro("string", "An image file url"),
    "stores": _ro("string", "Store in which image data resides.  Only present when the operator has "
                  "enabled multiple stores.  May be a comma-separated list of store identifiers."),
    "schema": _ro("string", "An image schema url"),
    "locations": {"type": "array", "description": "A set of URLs to access the image file kept in external store",
                  "items": {"type": "object", "required": ["url", "metadata"], "properties": {
                      "url": {"type": "string", "maxLength": 255},
                      "metadata": {"type": "object"},
                      "validation_data": {"type": "object", "description": "Values to be used to populate "
                                          "the corresponding image properties. If the image status is not "
                                          "'queued', values must exactly match those already contained in "
                                          "the image properties.", "writeOnce": True,
                                          "additionalProperties": False,
                                          "properties": {"checksum": {"type": "string", "minLength": 32,
                                                                      "maxLength": 32},
                                                         "os_hash_algo": {"type": "string", "maxLength": 64},
                                                         "os_hash_value": {"type": "string", "maxLength": 128}},
                                          "required": ["os_hash_algo", "os_hash_value"]}}}},
}

BASE_PROPERTIES: dict[str, dict] = {
    "kernel_id": _base("ID of image stored in Glance that should be used as the kernel when booting "
                       "an AMI-style image.", ["null", "string"], pattern=UUID_PATTERN),
    "ramdisk_id": _base("ID of image stored in Glance that should be used as the ramdisk when booting "
                        "an AMI-style image.", ["null", "string"], pattern=UUID_PATTERN),
    "instance_uuid": _base("Metadata which can be used to record which instance this image is "
                           "associated with. (Informational only, does not create an instance snapshot.)"),
    "architecture": _base("Operating system architecture as specified in "
                          "https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"),
    "os_distro": _base("Common name of operating system distribution as specified in "
                       "https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html"),
    "os_version": _base("Operating system version as specified by the distributor."),
    "description": _base("A human-readable string describing this image."),
    "cinder_encryption_key_id": _base("Identifier in the OpenStack Key Management Service for the "
                                      "encryption key for the Block Storage Service to use when mounting "
                                      "a volume created from this image"),
    "cinder_encryption_key_deletion_policy": _base(
        "States the condition under which the Image Service will delete the object associated with the "
        "'cinder_encryption_key_id' image property.  If this property is missing, the Image Service will "
        "take no action", enum=["on_image_deletion", "do_not_delete"]),
}

IMAGE_LINKS = [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
               {"rel": "describedby", "href": "{schema}"}]


def image_schema() -> dict:
    return {"name": "image", "properties": copy.deepcopy({**CORE_PROPERTIES, **BASE_PROPERTIES}),
            "additionalProperties": {"type": "string"}, "links": copy.deepcopy(IMAGE_LINKS)}


def images_schema() -> dict:
    return {"name": "images",
            "properties": {"images": {"type": "array", "items": image_schema()},
                           "schema": {"type": "string"}, "first": {"type": "string"},
                           "next": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]}


def member_schema() -> dict:
    return {"name": "member", "properties": {
        "created_at": {"type": "string", "description": "Date and time of image member creation"},
        "image_id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
        "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
        "schema": {"type": "string", "readOnly": True},
        "status": {"type": "string", "description": "The status of this image member",
                   "enum": ["pending", "accepted", "rejected"]},
        "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
    }}


def members_schema() -> dict:
    return {"name": "members", "properties": {"members": {"type": "array", "items": member_schema()},
                                              "schema": {"type": "string"}},
            "links": [{"rel": "self", "href": "{self}"}, {"rel": "describedby", "href": "{schema}"}]}


SCHEMAS = {"image": image_schema, "images": images_schema, "member": member_schema, "members": members_schema}

# What a client may not set (403 "Attribute 'x' is read-only." / "... is reserved.").
READ_ONLY = {"id", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
             "created_at", "updated_at", "direct_url", "self", "file", "schema", "stores"}
RESERVED = {"location", "deleted", "deleted_at", "locations"}
CORE_WRITABLE = {"name", "visibility", "protected", "os_hidden", "owner", "container_format",
                 "disk_format", "tags", "min_ram", "min_disk"}


async def show_schema(request, name: str):
    if name not in SCHEMAS:
        raise HTTPError(404, "The resource could not be found.")
    return json_response(SCHEMAS[name]())


def register(router) -> None:
    router.add("GET", "/v2/schemas/{name}", show_schema)
