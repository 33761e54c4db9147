"""Volume and snapshot metadata: all of it (``POST``/``PUT .../metadata``) or one key (``PUT .../metadata/{key}``)."""
from __future__ import annotations

import copy

from kilonova.volume.schemas import parameters as P

VOLUME_ALL = P.body("metadata", P.METADATA)
VOLUME_ONE = P.body("meta", P.one_pair(P.METADATA))

# Snapshots' keys have no '/', and their bodies may carry other keys beside.
_SNAPSHOT = copy.deepcopy(P.METADATA)
_SNAPSHOT["patternProperties"] = {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}}
SNAPSHOT_ALL = {**P.body("metadata", _SNAPSHOT), "additionalProperties": True}
SNAPSHOT_ONE = {**P.body("meta", P.one_pair(_SNAPSHOT)), "additionalProperties": True}
