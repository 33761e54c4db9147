"""``POST /volumes`` and ``PUT /volumes/{id}`` per microversion: 3.13 adds ``group_id``, 3.47 ``backup_id``,
3.53 refuses keys the schema does not name and an update that changes nothing."""
from __future__ import annotations

import copy

from kilonova.volume.schemas import parameters as P

_VOLUME = {"type": "object",
           "properties": {"name": P.VOLUME_NAME, "description": P.VOLUME_DESCRIPTION,
                          "display_name": P.VOLUME_NAME, "display_description": P.VOLUME_DESCRIPTION,
                          # a type's name or its id: looked up, not checked here
                          "volume_type": P.NAME_OR_EMPTY, "metadata": P.METADATA_OR_NULL,
                          "snapshot_id": P.OPTIONAL_UUID, "source_volid": P.OPTIONAL_UUID,
                          "consistencygroup_id": P.OPTIONAL_UUID, "size": P.VOLUME_SIZE_OR_NULL,
                          "availability_zone": P.AVAILABILITY_ZONE, "multiattach": P.OPTIONAL_BOOLEAN,
                          "image_id": P.NAME_OR_EMPTY, "imageRef": P.NAME_OR_EMPTY},
           "additionalProperties": True}
CREATE = P.body("volume", _VOLUME, **{"OS-SCH-HNT:scheduler_hints": {"type": ["object", "null"]}})

CREATE_3_13 = copy.deepcopy(CREATE)
CREATE_3_13["properties"]["volume"]["properties"]["group_id"] = P.NAME_OR_EMPTY
CREATE_3_47 = copy.deepcopy(CREATE_3_13)
CREATE_3_47["properties"]["volume"]["properties"]["backup_id"] = P.OPTIONAL_UUID
CREATE_3_53 = copy.deepcopy(CREATE_3_47)
CREATE_3_53["properties"]["volume"]["additionalProperties"] = False
CREATE_BY_VERSION = (((3, 0), CREATE), ((3, 13), CREATE_3_13), ((3, 47), CREATE_3_47), ((3, 53), CREATE_3_53))

UPDATE = P.body("volume", {"type": "object",
                           "properties": {"name": P.VOLUME_NAME, "description": P.VOLUME_DESCRIPTION,
                                          "display_name": P.VOLUME_NAME, "display_description": P.VOLUME_DESCRIPTION,
                                          "metadata": P.METADATA},
                           "additionalProperties": False})
UPDATE_3_53 = copy.deepcopy(UPDATE)
UPDATE_3_53["properties"]["volume"]["anyOf"] = [{"required": [name]} for name in (
    "name", "description", "display_name", "display_description", "metadata")]
UPDATE_BY_VERSION = (((3, 0), UPDATE), ((3, 53), UPDATE_3_53))
