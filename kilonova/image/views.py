"""Images and members as Glance v2 shows them."""
from __future__ import annotations

from datetime import datetime
from typing import Any


def timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def image(values: dict[str, Any]) -> dict[str, Any]:
    image_id = values["id"]
    body = {
        "status": values["status"], "name": values["name"], "tags": list(values["tags"]),
        "container_format": values["container_format"], "created_at": timestamp(values["created_at"]),
        "disk_format": values["disk_format"], "updated_at": timestamp(values["updated_at"]),
        "visibility": values["visibility"], "self": f"/v2/images/{image_id}", "min_disk": values["min_disk"],
        "protected": values["protected"], "id": image_id, "file": f"/v2/images/{image_id}/file",
        "checksum": values["checksum"], "os_hash_algo": values["os_hash_algo"],
        "os_hash_value": values["os_hash_value"], "owner": values["owner"], "size": values["size"],
        "min_ram": values["min_ram"], "schema": "/v2/schemas/image", "virtual_size": values["virtual_size"],
        "os_hidden": values["os_hidden"],
    }
    for name, value in values["properties"].items():
        body.setdefault(name, value)
    return body


def member(values: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": timestamp(values["created_at"]), "image_id": values["image_id"],
            "member_id": values["member_id"], "schema": "/v2/schemas/member", "status": values["status"],
            "updated_at": timestamp(values["updated_at"])}
