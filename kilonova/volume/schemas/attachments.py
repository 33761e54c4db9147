"""``POST /attachments`` (3.27; ``mode`` from 3.54) and ``PUT /attachments/{id}``."""
from __future__ import annotations

import copy

from kilonova.volume.schemas import parameters as P

CREATE = P.body("attachment", {"type": "object",
                               "properties": {"instance_uuid": P.UUID, "connector": {"type": ["object", "null"]},
                                              "volume_uuid": P.UUID},
                               "required": ["volume_uuid"], "additionalProperties": False})
CREATE_3_54 = copy.deepcopy(CREATE)
CREATE_3_54["properties"]["attachment"]["properties"]["mode"] = {"type": "string", "enum": ["rw", "ro"]}
CREATE_BY_VERSION = (((3, 0), CREATE), ((3, 54), CREATE_3_54))

UPDATE = P.body("attachment", {"type": "object",
                               "properties": {"connector": {"type": "object", "minProperties": 1}},
                               "required": ["connector"], "additionalProperties": False})
