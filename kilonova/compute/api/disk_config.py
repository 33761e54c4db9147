"""``OS-DCF:diskConfig``: AUTO (the guest's root partition is grown to the disk) or MANUAL, as upstream
keeps it per server (its ``auto_disk_config``) and shows it in every server body.

A request may name it at create, rebuild and resize; the schemas take AUTO or MANUAL only (400
otherwise). Without it, create and rebuild take the image's ``auto_disk_config`` property, and a resize
or cold migration sets MANUAL, as upstream's ``resize`` does. An image whose property is ``disabled``
refuses AUTO (upstream's 400). Kilonova keeps the setting, and the image's property for later
resizes, in the server's system_metadata.
"""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError

AUTO_KEY = "auto_disk_config"
IMAGE_KEY = "image_auto_disk_config"  # the image's property, under upstream's image_ prefix
_TRUE = ("1", "t", "true", "on", "y", "yes")


def requested(args: dict[str, Any]) -> bool | None:
    """What the request body asks for: True (AUTO), False (MANUAL) or None (nothing)."""
    value = args.get("OS-DCF:diskConfig")
    return None if value is None else value == "AUTO"


def _check(image_setting: str | None, auto: bool | None, image_id: str | None) -> None:
    if auto and image_setting is not None and str(image_setting).strip().lower() == "disabled":
        raise HTTPError(400, f"Requested image {image_id} has automatic disk resize disabled.")


def for_image(system_metadata: dict[str, Any], image: dict[str, Any], auto: bool | None) -> dict[str, Any]:
    """``system_metadata`` with the setting of a server (re)built from ``image``: the one asked for, else
    the image's; 400 when the image disables AUTO."""
    setting = image.get("auto_disk_config")
    _check(setting, auto, image.get("id"))
    if auto is None:
        auto = setting is not None and str(setting).strip().lower() in _TRUE
    recorded = {key: value for key, value in system_metadata.items() if key != IMAGE_KEY}
    recorded[AUTO_KEY] = auto
    if setting is not None:
        recorded[IMAGE_KEY] = str(setting)
    return recorded


def for_move(server: dict[str, Any], auto: bool | None) -> dict[str, Any]:
    """The server's system_metadata for a resize or cold migration: the setting asked for, else MANUAL;
    400 when the server's image disables AUTO."""
    system_metadata = dict(server.get("system_metadata") or {})
    _check(system_metadata.get(IMAGE_KEY), auto, server.get("image_ref"))
    system_metadata[AUTO_KEY] = bool(auto)
    return system_metadata


def updated(server: dict[str, Any], value: str) -> dict[str, Any]:
    """The server's system_metadata after PUT /servers/{id} set OS-DCF:diskConfig (no image check there,
    as upstream)."""
    return {**(server.get("system_metadata") or {}), AUTO_KEY: value == "AUTO"}


def shown(server: dict[str, Any]) -> str:
    return "AUTO" if (server.get("system_metadata") or {}).get(AUTO_KEY) else "MANUAL"
