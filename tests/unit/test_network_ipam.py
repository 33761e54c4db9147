"""Pure IPAM logic: CIDR checks, default gateway and pools, pool validation, picking addresses."""
import ipaddress

import pytest

from kilonova.common.http import HTTPError
from kilonova.network import ipam, mac


def test_cidr_validation():
    assert str(ipam.parse_cidr("10.0.0.0/24", 4)) == "10.0.0.0/24"
    with pytest.raises(HTTPError) as info:
        ipam.parse_cidr("10.0.0.1/24", 4)
    assert "'10.0.0.0/24' is recommended" in info.value.message
    for bad, version in (("nonsense", 4), ("fd00::/64", 4), (42, None)):
        with pytest.raises(HTTPError):
            ipam.parse_cidr(bad, version)


def test_defaults_ipv4_and_ipv6():
    net = ipaddress.ip_network("10.0.0.0/24")
    assert ipam.default_gateway(net) == "10.0.0.1"
    assert ipam.default_pools(net, "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ipam.default_pools(net, "10.0.0.100") == [{"start": "10.0.0.1", "end": "10.0.0.99"},
                                                     {"start": "10.0.0.101", "end": "10.0.0.254"}]
    assert ipam.default_pools(net, None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]
    v6 = ipaddress.ip_network("fd00::/64")
    assert ipam.default_gateway(v6) == "fd00::1"
    assert ipam.default_pools(v6, "fd00::1") == [{"start": "fd00::2", "end": "fd00::ffff:ffff:ffff:ffff"}]


def test_pool_checks():
    net = ipaddress.ip_network("10.0.0.0/24")
    pools = [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}]
    assert ipam.check_pools(net, pools, "10.0.0.1")[0]["start"] == "10.0.0.10"
    bad = [
        [{"start": "10.0.0.10", "end": "10.0.1.20"}],                                          # out of cidr
        [{"start": "10.0.0.30", "end": "10.0.0.20"}],                                          # reversed
        [{"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.15", "end": "10.0.0.25"}],  # overlap
        [{"start": "10.0.0.1", "end": "10.0.0.20"}],                                           # holds gateway
        [{"start": "10.0.0.1"}],
    ]
    for pools in bad:
        with pytest.raises(HTTPError):
            ipam.check_pools(net, pools, "10.0.0.1")
    with pytest.raises(HTTPError):
        ipam.check_gateway(net, "10.0.1.1")
    with pytest.raises(HTTPError):
        ipam.check_gateway(net, "10.0.0.255")


def test_first_free():
    pools = [{"start": "10.0.0.2", "end": "10.0.0.4"}, {"start": "10.0.0.10", "end": "10.0.0.10"}]
    assert ipam.first_free(pools, set()) == "10.0.0.2"
    assert ipam.first_free(pools, {"10.0.0.2", "10.0.0.3", "10.0.0.4"}) == "10.0.0.10"
    assert ipam.first_free(pools, {"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.10"}) is None


def test_macs():
    addresses = {mac.random_mac() for _ in range(200)}
    assert all(a.startswith("fa:16:3e:") and len(a) == 17 for a in addresses)
    assert len(addresses) > 190
    assert mac.normalize("FA-16-3E-00-00-01") == "fa:16:3e:00:00:01"
    assert mac.normalize("01:00:5e:00:00:01") is None  # multicast
    assert mac.normalize("nonsense") is None
