"""Volume types (``POST``/``PUT /types``) and their extra specs (``POST .../extra_specs``, ``PUT
.../extra_specs/{key}``)."""
from __future__ import annotations

from kilonova.volume.schemas import parameters as P

CREATE = P.body("volume_type", {"type": "object",
                                "properties": {"name": P.NAME, "description": P.DESCRIPTION,
                                               "extra_specs": P.SPECS_OR_NULL_VALUES,
                                               "os-volume-type-access:is_public": P.BOOLEAN},
                                "required": ["name"], "additionalProperties": False})

UPDATE = P.body("volume_type", {"type": "object",
                                "properties": {"name": P.NAME_OR_EMPTY, "description": P.DESCRIPTION,
                                               "is_public": P.BOOLEAN},
                                "additionalProperties": False})

SPECS_CREATE = P.body("extra_specs", P.SPECS_NO_SPACES)
SPECS_UPDATE = P.one_pair(P.SPECS_NO_SPACES)
