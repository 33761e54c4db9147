"""Bad request bodies to the block-storage API, sent by the real `cinder` and `openstack` CLIs and as raw HTTP:
each refused with 400 and Cinder's schema wording ("Invalid input for field/attribute <field>. Value: <value>.
<reason>"), per microversion as upstream (3.53 refuses keys the schema does not name)."""
from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def http(cloud):
    conn = cloud.sdk("kilonova-demo")
    url = conn.block_storage.get_endpoint().rstrip("/") + "/"
    with httpx.Client(base_url=url, headers={"X-Auth-Token": conn.auth_token}, timeout=30) as client:
        yield client


def _refused(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    fault = answer.json()["badRequest"]
    assert fault["code"] == 400
    return fault["message"]


def test_cinder_cli_negative_size_and_long_name(cloud):
    negative = cloud.cinder("create", "--name", "negative", "--", "-1", cloud="kilonova-demo", check=False)
    assert negative.returncode != 0
    assert ("Invalid input for field/attribute size. Value: -1. -1 is less than the minimum of 1 (HTTP 400)"
            in negative.stderr), negative.stderr
    long = cloud.cinder("create", "--name", "n" * 256, "1", cloud="kilonova-demo", check=False)
    assert long.returncode != 0
    assert "Invalid input received: name has 256 characters, more than 255. (HTTP 400)" in long.stderr, long.stderr
    listed = cloud.cinder("list", cloud="kilonova-demo").stdout
    assert "negative" not in listed and "n" * 256 not in listed


def test_openstack_cli_extra_spec_key_with_a_space(cloud):
    cloud.openstack("volume", "type", "create", "spaced")
    try:
        refused = cloud.openstack("volume", "type", "set", "--property", "bad key=1", "spaced", check=False)
        assert refused.returncode != 0
        assert ("Invalid input for field/attribute extra_specs. Value: {'bad key': '1'}. 'bad key' does not "
                "match any of the regexes" in refused.stderr), refused.stderr
        assert cloud.openstack("volume", "type", "show", "spaced", fmt_json=True)["properties"] == {}
    finally:
        cloud.openstack("volume", "type", "delete", "spaced")


def test_wrong_types_and_bounds_over_http(http):
    for body, message in (
            ({"volume": {"size": "one"}},
             "Invalid input for field/attribute size. Value: one. 'one' does not match '^[0-9]+$'"),
            ({"volume": {"size": 1.5}},
             "Invalid input for field/attribute size. Value: 1.5. 1.5 is not of type 'integer', 'string', 'null'"),
            ({"volume": {"size": 1, "name": 5}},
             "Invalid input for field/attribute name. Value: 5. 5 is not of type 'string', 'null'"),
            ({"volume": {"size": 1, "metadata": {"tier": 1}}},
             "Invalid input for field/attribute tier. Value: 1. 1 is not of type 'string'"),
            ({"volume": {"size": 1}, "colour": "red"}, "Additional properties are not allowed ('colour' was unexpected)"),
            ({"nothing": 1}, "'volume' is a required property")):
        assert _refused(http.post("volumes", json=body)) == message, body


def test_quota_set_refusals_for_an_admin(cloud):
    admin = cloud.sdk()
    project = cloud.sdk("kilonova-demo").current_project_id
    url = f"{admin.block_storage.get_endpoint().rstrip('/')}/os-quota-sets/{project}"
    for quota_set, message in (({"volumes": "many"}, "volumes must be an integer"),
                               ({"gigabytes": -2}, "gigabytes must be >= -1"),
                               ({"bogus": 1}, "Invalid input received: Bad key(s) in quota set: bogus")):
        answer = httpx.put(url, json={"quota_set": quota_set}, headers={"X-Auth-Token": admin.auth_token}, timeout=30)
        assert _refused(answer) == message, quota_set


def test_unknown_key_refused_from_3_53(cloud, http):
    body = {"volume": {"size": 1, "name": "colourful", "colour": "red"}}
    refused = http.post("volumes", json=body, headers={"OpenStack-API-Version": "volume 3.53"})
    assert _refused(refused) == ("Invalid input for field/attribute volume. Value: {'size': 1, 'name': 'colourful', "
                                 "'colour': 'red'}. Additional properties are not allowed ('colour' was unexpected)")
    before = http.post("volumes", json=body, headers={"OpenStack-API-Version": "volume 3.52"})
    assert before.status_code == 202, before.text                # before 3.53 an unknown key is ignored
    volume_id = before.json()["volume"]["id"]
    try:
        empty = http.put(f"volumes/{volume_id}", json={"volume": {}}, headers={"OpenStack-API-Version": "volume 3.53"})
        assert _refused(empty) == ("Invalid input for field/attribute volume. Value: {}. {} is not valid under any "
                                   "of the given schemas")
        assert http.put(f"volumes/{volume_id}", json={"volume": {}}).status_code == 200   # 3.0: nothing to change
    finally:
        conn = cloud.sdk("kilonova-demo")
        conn.block_storage.wait_for_status(conn.block_storage.get_volume(volume_id), "available", wait=60)
        conn.block_storage.delete_volume(volume_id)
