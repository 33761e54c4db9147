"""The server list's filters that run in Python (tag filters, ip, status, build requests) and the checks on
filter values, without a cloud."""
from __future__ import annotations

import pytest

from kilonova.common.http import HTTPError
from kilonova.compute.api import server_query


def server(**values) -> dict:
    return {"uuid": "u1", "display_name": "web-1", "vm_state": "active", "task_state": None,
            "flavor": {"id": "1"}, "tags": ["blue", "red"],
            "network_info": [{"fixed_ips": [{"ip_address": "10.0.0.5", "version": 4,
                                             "floating_ips": ["172.24.4.9"]},
                                            {"ip_address": "fd00::5", "version": 6}]}], **values}


@pytest.mark.parametrize(("db", "passes"), [
    ({"tags:all": ["blue", "red"]}, True), ({"tags:all": ["blue", "green"]}, False),
    ({"tags:any": ["green", "red"]}, True), ({"tags:any": ["green"]}, False),
    ({"tags:not-all": ["blue", "red"]}, False), ({"tags:not-all": ["blue", "green"]}, True),
    ({"tags:not-any": ["green", "red"]}, False), ({"tags:not-any": ["green"]}, True),
])
def test_tag_filters_on_build_requests(db, passes):
    """The database applies them to instances (tests/distributed/test_server_query_databases.py); a build
    request is filtered the same way in Python."""
    assert server_query.pending_filter(db)(server()) is passes


def test_ip_filters_match_fixed_addresses_of_their_version_only():
    assert server_query.post_filter(server(), {"ip": "10.0.0."})
    assert not server_query.post_filter(server(), {"ip": "172.24.4.9"})  # floating: not a fixed address
    assert not server_query.post_filter(server(), {"ip": "fd00::"})  # an IPv6 address is ip6's
    assert server_query.post_filter(server(), {"ip6": "fd00::5"})
    assert server_query.ip_text(r"^10\.0\.0\.5$") == "10.0.0.5"


def test_status_and_flavor():
    assert server_query.post_filter(server(), {"status": ["ACTIVE", "SHUTOFF"]})
    assert not server_query.post_filter(server(task_state="rebooting"), {"status": ["ACTIVE"]})
    assert not server_query.post_filter(server(), {"flavor": "2"})
    assert not server_query.post_filter(server(), {"nothing": True})


def test_build_requests_are_filtered_like_cell_rows():
    matches = server_query.pending_filter({"regex:display_name": "^web-[0-9]$", "vm_state": ["active"]})
    assert matches(server())
    assert not matches(server(display_name="db-1"))
    assert not server_query.pending_filter({"host": "compute1"})(server())  # no host before scheduling
    assert not server_query.pending_filter({"regex:key_name": "k"})(server())  # no value: no match


def test_a_pattern_that_does_not_compile_is_a_400():
    assert server_query.pattern("name", "^web") == "^web"
    with pytest.raises(HTTPError) as refused:
        server_query.pattern("name", "web(")
    assert refused.value.status == 400
    assert refused.value.message == "Invalid input for query parameters name. Value: web(. 'web(' is not a 'regex'"
