"""Building blocks shared by the block-storage schemas: Cinder's parameter types, with its limits."""
from __future__ import annotations

import copy
import functools
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


@functools.lru_cache(maxsize=None)
def printable_pattern() -> str:
    """Upstream's description pattern: a character class of the printable characters of the basic plane, as
    ranges (its 400 quotes it). Some 65,000 look-ups in the Unicode database (tens of milliseconds), and as
    long to compile: built when a refusal first quotes it, not at import."""
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
    return f"^[{''.join(parts)}]*$"


def is_printable_text(value: str) -> bool:
    """Whether ``printable_pattern()`` matches ``value`` (``re.search``), without building it: every character
    printable and in the basic plane (the class stops at U+FFFE), but for one last newline (``$`` matches
    before it)."""
    return all(char < "\uffff" and printable(char) for char in value.removesuffix("\n"))


# Upstream's is {"pattern": printable_pattern()}; the format "printable" (volume/validation.py) accepts the same
# strings, character by character, and words its refusal with that pattern.
DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 255, "format": "printable"}
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
