"""Building blocks shared by the block-storage schemas: Cinder's parameter types, with its limits."""
from __future__ import annotations

import copy
import re

from kilonova.common.validation import printable

MAX_INT = 2 ** 31 - 1     # the database's integer columns

# oslo's bool_from_string spellings that Cinder's schemas take (its 400 lists them in this order).
BOOLEAN = {"type": ["boolean", "string"],
           "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
                    False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]}
OPTIONAL_BOOLEAN = {"oneOf": [{"type": "null"}, BOOLEAN]}

UUID = {"type": "string", "format": "uuid"}
OPTIONAL_UUID = {"oneOf": [{"type": "null"}, UUID]}
UUID_OR_NULL = {"oneOf": [UUID, {"type": "null"}]}

NAME = {"type": "string", "minLength": 1, "maxLength": 255, "format": "name"}
NAME_OR_EMPTY = {"type": ["string", "null"], "minLength": 0, "maxLength": 255}
# Volumes' name and description: stripped, then at most 255 characters (Cinder's own 400 says how many).
VOLUME_NAME = {"type": ["string", "null"], "format": "name_non_mandatory_remove_white_spaces"}
VOLUME_DESCRIPTION = {"type": ["string", "null"], "format": "description_non_mandatory_remove_white_spaces"}


def _printable_ranges() -> str:
    """A character class of the printable characters of the basic plane, as ranges (upstream's
    description pattern has the same set; its 400 quotes the pattern)."""
    parts, start, previous = [], None, None
    for code in range(0xFFFF):
        if printable(chr(code)):
            if start is None:
                start = code
            previous = code
        elif start is not None:
            parts.append(re.escape(chr(start)) + ("" if previous == start else "-" + re.escape(chr(previous))))
            start = None
    if start is not None:
        parts.append(re.escape(chr(start)) + ("" if previous == start else "-" + re.escape(chr(previous))))
    return "".join(parts)


DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255,
               "pattern": f"^[{_printable_ranges()}]*$"}
CONTAINER_FORMAT = DESCRIPTION

VOLUME_SIZE = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT}
# at create, clients send a null size for a copy of a snapshot or a volume (its size then)
VOLUME_SIZE_OR_NULL = {**VOLUME_SIZE, "type": ["integer", "string", "null"]}
AVAILABILITY_ZONE = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}

# Metadata and extra specs: keys of these characters, string values of at most 255.
METADATA = {"type": "object",
            "patternProperties": {"^[a-zA-Z0-9-_:. /]{1,255}$": {"type": "string", "maxLength": 255}},
            "additionalProperties": False}
METADATA_OR_NULL = {**copy.deepcopy(METADATA), "type": ["object", "null"]}
SPECS_OR_NULL_VALUES = copy.deepcopy(METADATA)
SPECS_OR_NULL_VALUES["patternProperties"]["^[a-zA-Z0-9-_:. /]{1,255}$"]["type"] = ["string", "null"]
# Extra specs set on their own: no spaces in keys.
SPECS_NO_SPACES = {"type": "object",
                   "patternProperties": {"^[a-zA-Z0-9-_:.]{1,255}$": {"type": ["string", "null"], "minLength": 0,
                                                                      "maxLength": 255}},
                   "additionalProperties": False}
# Image properties set on a volume: keys as metadata's; values are kept in a 255-character column here
# (upstream keeps longer ones), so at most that.
IMAGE_METADATA = METADATA


def body(key: str, inner: dict, **extra) -> dict:
    """``{key: inner}`` as the whole body, nothing else beside it."""
    return {"type": "object", "properties": {key: inner, **extra}, "required": [key], "additionalProperties": False}


def one_pair(schema: dict) -> dict:
    """``schema`` for exactly one key (``PUT .../metadata/{key}``)."""
    return {**copy.deepcopy(schema), "minProperties": 1, "maxProperties": 1}
