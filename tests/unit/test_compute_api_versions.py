"""Microversion negotiation and server status mapping, as upstream Nova does them."""
import pytest
from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.compute.api import microversions
from kilonova.compute.api.views import addresses, host_id, status_of


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


@pytest.mark.parametrize("headers, expected", [
    ({}, (2, 1)),
    ({"OpenStack-API-Version": "compute 2.47"}, (2, 47)),
    ({"X-OpenStack-Nova-API-Version": "2.9"}, (2, 9)),
    ({"OpenStack-API-Version": "compute latest"}, microversions.MAX),
    ({"OpenStack-API-Version": "placement 1.5, compute 2.19"}, (2, 19)),
    # the new header wins over the legacy one
    ({"OpenStack-API-Version": "compute 2.30", "X-OpenStack-Nova-API-Version": "2.3"}, (2, 30)),
])
def test_negotiation(headers, expected):
    assert microversions.negotiate(request(headers)) == expected


def test_out_of_range_is_406_and_garbage_is_400():
    with pytest.raises(HTTPError) as info:
        microversions.negotiate(request({"OpenStack-API-Version": "compute 2.999"}))
    assert info.value.status == 406
    assert "maximum is " + microversions.MAX_VERSION in info.value.message
    with pytest.raises(HTTPError) as info:
        microversions.negotiate(request({"OpenStack-API-Version": "compute two"}))
    assert info.value.status == 400


def test_every_version_up_to_max_is_listed():
    assert microversions.MAX_VERSION == list(microversions.VERSIONS)[-1]
    assert [f"2.{i}" for i in range(1, microversions.MAX[1] + 1)] == list(microversions.VERSIONS)


@pytest.mark.parametrize("vm_state, task_state, status", [
    ("building", "scheduling", "BUILD"), ("active", None, "ACTIVE"), ("active", "rebooting", "REBOOT"),
    ("active", "rebooting_hard", "HARD_REBOOT"), ("active", "deleting", "ACTIVE"), ("stopped", None, "SHUTOFF"),
    ("error", None, "ERROR"), ("paused", None, "PAUSED"), ("suspended", None, "SUSPENDED"),
    ("weird", None, "UNKNOWN"),
])
def test_status_mapping(vm_state, task_state, status):
    assert status_of(vm_state, task_state) == status


def test_addresses_and_host_id():
    info = [{"network_label": "private", "mac_address": "fa:16:3e:00:00:01",
             "fixed_ips": [{"ip_address": "10.0.0.5", "version": 4}, {"ip_address": "fd00::5", "version": 6}]}]
    assert addresses(info) == {"private": [
        {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
        {"version": 6, "addr": "fd00::5", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]}
    assert host_id("p1", None) == ""
    assert host_id("p1", "h1") != host_id("p2", "h1")
