"""``POST /snapshots``, ``PUT /snapshots/{id}`` and the snapshot action ``os-update_snapshot_status``."""
from __future__ import annotations

from kilonova.volume.schemas import parameters as P

CREATE = P.body("snapshot", {"type": "object",
                             "properties": {"name": P.NAME_OR_EMPTY, "display_name": P.NAME_OR_EMPTY,
                                            "description": P.DESCRIPTION, "volume_id": P.UUID_OR_NULL,
                                            "force": P.BOOLEAN, "metadata": P.METADATA_OR_NULL},
                             "required": ["volume_id"], "additionalProperties": False})

UPDATE = P.body("snapshot", {"type": "object",
                             "properties": {"name": P.NAME_OR_EMPTY, "description": P.DESCRIPTION,
                                            "display_name": P.NAME_OR_EMPTY, "display_description": P.DESCRIPTION},
                             "additionalProperties": False,
                             "anyOf": [{"required": [name]} for name in (
                                 "name", "description", "display_name", "display_description")]})

UPDATE_STATUS = P.body("os-update_snapshot_status", {
    "type": "object", "properties": {"status": {"type": "string"}, "progress": {"format": "progress"}},
    "required": ["status"], "additionalProperties": False})
