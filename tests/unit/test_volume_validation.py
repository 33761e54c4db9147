"""The volume API's request schemas (kilonova/volume/schemas/) and Cinder's wording of their 400s
(kilonova/volume/validation.py): what each refuses and the exact message a client sees."""
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from kilonova.common import validation as common_validation
from kilonova.common.http import HTTPError
from kilonova.volume import validation
from kilonova.volume.schemas import (attachments, metadata, parameters, quotas, snapshots, volume_actions,
                                     volume_types, volumes)
from kilonova.volume.service import QUOTA_OPTIONS

UUID = "0e7a1f0e-0000-4000-8000-000000000001"


def at(version: str):
    major, minor = version.split(".")
    return SimpleNamespace(state=SimpleNamespace(volume_version=(int(major), int(minor))))


def refusal(schema, body, version: str = "3.0") -> str:
    with pytest.raises(HTTPError) as raised:
        validation.validate(at(version), body, schema)
    assert raised.value.status == 400
    return raised.value.message


@pytest.mark.parametrize("body, message", [
    ({"volume": {"size": -1}}, "Invalid input for field/attribute size. Value: -1. -1 is less than the minimum of 1"),
    ({"volume": {"size": "0"}}, "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1"),
    ({"volume": {"size": "one"}}, "Invalid input for field/attribute size. Value: one. 'one' does not match "
                                  "'^[0-9]+$'"),
    ({"volume": {"size": 1.5}}, "Invalid input for field/attribute size. Value: 1.5. 1.5 is not of type "
                                "'integer', 'string', 'null'"),
    ({"volume": {"size": True}}, "Invalid input for field/attribute size. Value: True. True is not of type "
                                 "'integer', 'string', 'null'"),
    ({"volume": {"size": 2 ** 31}}, "Invalid input for field/attribute size. Value: 2147483648. 2147483648 is "
                                    "greater than the maximum of 2147483647"),
    ({"volume": {"size": 1, "name": 5}}, "Invalid input for field/attribute name. Value: 5. 5 is not of type "
                                         "'string', 'null'"),
    ({"volume": {"size": 1, "name": "n" * 256}}, "Invalid input received: name has 256 characters, more than 255."),
    ({"volume": {"size": 1, "description": "d" * 300}},
     "Invalid input received: description has 300 characters, more than 255."),
    ({"volume": {"size": 1, "snapshot_id": "x"}},
     "Invalid input for field/attribute snapshot_id. Value: x. 'x' is not valid under any of the given schemas"),
    ({"volume": {"size": 1, "metadata": {"k": 1}}},
     "Invalid input for field/attribute k. Value: 1. 1 is not of type 'string'"),
    ({"volume": {"size": 1, "multiattach": "perhaps"}},
     "Invalid input for field/attribute multiattach. Value: perhaps. 'perhaps' is not valid under any of the "
     "given schemas"),
    ({"volume": {"size": 1}, "extra": 1}, "Additional properties are not allowed ('extra' was unexpected)"),
    ({"nothing": 1}, "'volume' is a required property"),
    ([], "[] is not of type 'object'"),
])
def test_volume_create_refusals(body, message):
    assert refusal(volumes.CREATE_BY_VERSION, body) == message


def test_unknown_keys_are_refused_from_3_53_only():
    body = {"volume": {"size": 1, "colour": "red"}}
    for version in ("3.0", "3.52"):
        validation.validate(at(version), body, volumes.CREATE_BY_VERSION)
    assert refusal(volumes.CREATE_BY_VERSION, body, "3.53") == (
        "Invalid input for field/attribute volume. Value: {'size': 1, 'colour': 'red'}. Additional properties are "
        "not allowed ('colour' was unexpected)")
    # group_id from 3.13, backup_id (a uuid) from 3.47
    validation.validate(at("3.53"), {"volume": {"size": 1, "group_id": "g", "backup_id": None}},
                        volumes.CREATE_BY_VERSION)
    assert "'x' is not valid under any" in refusal(volumes.CREATE_BY_VERSION,
                                                   {"volume": {"size": 1, "backup_id": "x"}}, "3.47")
    # a null size (a copy of a snapshot) and strings of digits pass
    validation.validate(at("3.71"), {"volume": {"size": None, "snapshot_id": UUID.upper()}},
                        volumes.CREATE_BY_VERSION)
    validation.validate(at("3.71"), {"volume": {"size": "10"}}, volumes.CREATE_BY_VERSION)


def test_volume_update_changes_something_from_3_53():
    validation.validate(at("3.52"), {"volume": {}}, volumes.UPDATE_BY_VERSION)
    assert refusal(volumes.UPDATE_BY_VERSION, {"volume": {}}, "3.53") == (
        "Invalid input for field/attribute volume. Value: {}. {} is not valid under any of the given schemas")
    assert refusal(volumes.UPDATE_BY_VERSION, {"volume": {"size": 2}}) == (
        "Invalid input for field/attribute volume. Value: {'size': 2}. Additional properties are not allowed "
        "('size' was unexpected)")


@pytest.mark.parametrize("schema, body, message", [
    (volume_actions.EXTEND, {"os-extend": {}},
     "Invalid input for field/attribute os-extend. Value: {}. 'new_size' is a required property"),
    (volume_actions.EXTEND, {"os-extend": {"new_size": 0}},
     "Invalid input for field/attribute new_size. Value: 0. 0 is less than the minimum of 1"),
    (volume_actions.SET_BOOTABLE, {"os-set_bootable": {"bootable": "maybe"}},
     "Invalid input for field/attribute bootable. Value: maybe. 'maybe' is not one of [True, 'True', 'TRUE', "
     "'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'y', 't', False, 'False', 'FALSE', 'false', '0', "
     "'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', 'f']"),
    (volume_actions.RESET_STATUS, {"os-reset_status": {}},
     "Must specify 'status', 'attach_status' or 'migration_status' for update."),
    (volume_actions.RESET_STATUS, {"os-reset_status": {"bogus": 1}},   # the body's own check comes first
     "Must specify 'status', 'attach_status' or 'migration_status' for update."),
    (volume_actions.RESET_STATUS, {"os-reset_status": {"attach_status": "glued"}},
     "Volume attach status: glued is invalid, valid statuses are: ['attached', 'detached']."),
    (volume_actions.ATTACH, {"os-attach": {"mountpoint": "/dev/vdb"}},
     "Invalid input for field/attribute os-attach. Value: {'mountpoint': '/dev/vdb'}. {'mountpoint': '/dev/vdb'} "
     "is not valid under any of the given schemas"),
    (volume_actions.ATTACH, {"os-attach": {"instance_uuid": UUID, "mountpoint": "/dev/vdb", "mode": "rx"}},
     "Invalid input for field/attribute mode. Value: rx. 'rx' is not one of ['rw', 'ro']"),
    (volume_actions.RETYPE, {"os-retype": {"new_type": "t", "migration_policy": "always"}},
     "Invalid input for field/attribute migration_policy. Value: always. 'always' is not one of "
     "['on-demand', 'never']"),
    (volume_actions.UNSET_IMAGE_METADATA, {"os-unset_image_metadata": {"key": ""}},
     "Invalid input for field/attribute key. Value: . '' should be non-empty"),
    (snapshots.CREATE, {"snapshot": {"name": "s"}},
     "Invalid input for field/attribute snapshot. Value: {'name': 's'}. 'volume_id' is a required property"),
    (snapshots.UPDATE_STATUS, {"os-update_snapshot_status": {"status": "creating", "progress": "50"}},
     "Invalid input received: progress must be an integer percentage between 0 and 100"),
    (snapshots.UPDATE_STATUS, {"os-update_snapshot_status": {"status": "creating", "progress": "half%"}},
     "Invalid input received: progress must be an integer percentage"),
    (volume_types.CREATE, {"volume_type": {"name": "   "}},
     "An invalid 'name' value was provided. The 'name' can not be empty."),
    (volume_types.CREATE, {"volume_type": {"name": "t", "is_public": True}},
     "Invalid input for field/attribute volume_type. Value: {'name': 't', 'is_public': True}. Additional "
     "properties are not allowed ('is_public' was unexpected)"),
    (volume_types.SPECS_CREATE, {"extra_specs": {"bad key": "1"}},
     "Invalid input for field/attribute extra_specs. Value: {'bad key': '1'}. 'bad key' does not match any of "
     "the regexes: '^[a-zA-Z0-9-_:.]{1,255}$'"),
    (volume_types.SPECS_UPDATE, {"a": "1", "b": "2"}, "{'a': '1', 'b': '2'} has too many properties"),
    (metadata.VOLUME_ONE, {"meta": {}}, "Invalid input for field/attribute meta. Value: {}. {} should be non-empty"),
    (attachments.UPDATE, {"attachment": {"connector": {}}},
     "Invalid input for field/attribute connector. Value: {}. {} should be non-empty"),
    (quotas.UPDATE, {"quota_set": {"volumes": "many"}}, "volumes must be an integer"),
    (quotas.UPDATE, {"quota_set": {"volumes": True}}, "volumes must be an integer"),
    (quotas.UPDATE, {"quota_set": {"gigabytes": -2}}, "gigabytes must be >= -1"),
    (quotas.UPDATE, {"quota_set": {"bogus": 1, "other": 2, "volumes": 3}},
     "Invalid input received: Bad key(s) in quota set: bogus, other"),
])
def test_other_refusals(schema, body, message):
    assert refusal(schema, body, "3.71") == message


def test_attachment_mode_from_3_54():
    body = {"attachment": {"volume_uuid": UUID, "mode": "ro"}}
    assert "('mode' was unexpected)" in refusal(attachments.CREATE_BY_VERSION, body, "3.53")
    validation.validate(at("3.54"), body, attachments.CREATE_BY_VERSION)


def test_quota_keys_are_the_services():
    assert quotas.RESOURCES == set(QUOTA_OPTIONS)


def test_bounds_on_strings_are_left_to_jsonschema_by_the_quick_check():
    """Cinder's bounds read "0" as 0: the shared quick check must not answer yes before jsonschema refuses it
    (it says yes quickly to plain numbers only)."""
    quick = common_validation._compiled(volume_actions.EXTEND, validation._DIALECT, validation.FORMATS)[1]
    if quick is not None:
        assert quick({"os-extend": {"new_size": "0"}}) is False
        assert quick({"os-extend": {"new_size": "3"}}) is False
    assert common_validation.first_error(volume_actions.EXTEND, {"os-extend": {"new_size": "0"}},
                                         dialect=validation._DIALECT, format_checker=validation.FORMATS)


def test_description_refusal_quotes_upstreams_pattern():
    """Descriptions are held to Cinder's pattern of printable characters, and a refusal quotes it; the
    length is judged first, as in upstream's schema."""
    pattern = parameters.printable_pattern()
    assert pattern.startswith("^[\\ -\\~\xa0-") and pattern.endswith("]*$")
    for schema, body, field, value in [
            (volume_types.CREATE, {"volume_type": {"name": "t", "description": "a\x01"}}, "description", "a\x01"),
            (snapshots.UPDATE, {"snapshot": {"display_description": "\u2028"}}, "display_description", "\u2028"),
            (volume_actions.UPLOAD_IMAGE_BY_VERSION,
             {"os-volume_upload_image": {"image_name": "i", "container_format": "💥"}}, "container_format", "💥")]:
        assert refusal(schema, body, "3.1") == (
            f"Invalid input for field/attribute {field}. Value: {value}. {value!r} does not match {pattern!r}")
    assert refusal(volume_types.UPDATE, {"volume_type": {"description": "\x00" * 256}}).endswith(" is too long")
    for accepted in ("", None, "caf\u00e9\u00a0\u3000ok", "\ufffd", "line\n"):
        validation.validate(at("3.0"), {"volume_type": {"name": "t", "description": accepted}}, volume_types.CREATE)


def test_printable_format_accepts_what_the_pattern_matches():
    """The format that stands for the pattern (so that it need not be built) says yes to exactly the strings
    ``re.search`` of the pattern matches: every character of the basic plane, a few beyond, a last newline."""
    pattern = re.compile(parameters.printable_pattern())
    for char in [*map(chr, range(0x10000)), "\U0001F4A5", "\U00010000", "\U000E0001", "\U0010FFFF"]:
        for text in (f"a{char}b", f"{char}\n", f"{char}{char}"):
            assert validation._printable(text) == bool(pattern.search(text)), ascii(text)
    for text in ("\n", "\n\n", "a\n\n", "a\nb", "a\r\n"):
        assert validation._printable(text) == bool(pattern.search(text)), ascii(text)


def test_importing_the_volume_service_builds_no_pattern():
    """The description pattern is some 65,000 Unicode look-ups: importing the volume API does none of them
    (they are done at the first refusal that quotes it)."""
    code = ("from kilonova.common import validation\n"
            "looked_up = []\n"
            "real = validation.printable\n"
            "validation.printable = lambda char: looked_up.append(char) or real(char)\n"
            "import kilonova.volume.app\n"
            "print(len(looked_up))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "0"
