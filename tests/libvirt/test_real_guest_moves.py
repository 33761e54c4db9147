"""Moves of a real guest between two libvirt compute hosts through the whole stack and the `openstack` CLI.

The deployment is ``two_hosts``: one control plane, host A on the system libvirtd and host B on a second
libvirtd in its own network and mount namespaces, each a ``kilonova serve compute`` of its own. One guest
(hostsetup's tiny one, with a port on the private network) is booted for the module; each test moves it from
wherever it is to the other host, so the tests do not depend on their order. What is checked is what a user
and an operator would: the server's host, the guest's console (a live-migrated guest goes on counting its
uptime with no boot lines; a cold-moved one booted again there, after a clean shutdown), which libvirtd runs
the domain, the Placement allocations (on the server's host only) and ``kilonova manage placement audit``.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import console_lines, upload_guest, wait_status
from tests.libvirt.two_hosts import HOST_A, HOST_B

BOOTED = f"{MARKER} booted kernel"


@pytest.fixture(scope="module")
def hosts(guest):
    from tests.libvirt.second_host import SecondHostError
    from tests.libvirt.two_hosts import two_libvirt_hosts

    try:
        with two_libvirt_hosts(guest) as deployment:
            yield deployment
    except SecondHostError as exc:
        pytest.skip(f"cannot run a second libvirtd here: {exc}")


@pytest.fixture(scope="module")
def server(hosts, guest) -> str:
    """The module's guest, booted on host A and ready (its DHCP lease taken)."""
    image = upload_guest(hosts, guest, "moves")
    hosts.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "moves.small")
    hosts.openstack("flavor", "create", "--ram", "192", "--disk", "1", "--vcpus", "2", "moves.large")
    created = hosts.openstack("--os-compute-api-version", "2.74", "server", "create", "--flavor", "moves.small",
                              "--image", image["id"], "--network", "private", "--host", HOST_A, "--wait", "moving-vm",
                              fmt_json=True, timeout=180)
    uuid = created["id"]
    log = console_until(hosts, uuid, lambda text: f"{MARKER} ready" in text)
    assert console_lines(log, "dhcp"), log
    return uuid


def console(hosts, uuid: str) -> str:
    with hosts.http("compute") as api:
        return api.post(f"/servers/{uuid}/action", json={"os-getConsoleOutput": {}}).json()["output"]


def console_until(hosts, uuid: str, done, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not done(log := console(hosts, uuid)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the console of {uuid} never showed what was awaited:\n{log[-3000:]}")
        time.sleep(0.5)
    return log


def uptimes(log: str) -> list[float]:
    return [float(value) for value in console_lines(log, "alive")]


def shown(hosts, uuid: str) -> dict:
    """The server as `openstack server show` has it (read from the API: the CLI costs seconds a call here)."""
    with hosts.http("compute") as api:
        return api.get(f"/servers/{uuid}").json()["server"]


def other(host: str) -> str:
    return HOST_B if host == HOST_A else HOST_A


def assert_all_on(hosts, uuid: str, host: str) -> None:
    """The server's allocations are on ``host``'s provider only, its domain runs on ``host``'s libvirtd only,
    and the audit finds nothing leaked or missing."""
    with hosts.http("placement") as placement:
        names = {p["uuid"]: p["name"] for p in placement.get("/resource_providers").json()["resource_providers"]}
        held = placement.get(f"/allocations/{uuid}").json()["allocations"]
    with hosts.http("compute") as api:
        migrations = api.get("/os-migrations", params={"instance_uuid": uuid},
                             headers={"OpenStack-API-Version": "compute 2.59"}).json()["migrations"]
    with hosts.http("placement") as placement:
        leftovers = {m["uuid"]: placement.get(f"/allocations/{m['uuid']}").json()["allocations"] for m in migrations}
    assert {names[rp] for rp in held} == {host}, held
    assert not any(leftovers.values()), leftovers  # no migration still holds the other host's resources
    assert len(hosts.domains(host)) == 1 and not hosts.domains(other(host)), (hosts.domains(HOST_A),
                                                                               hosts.domains(HOST_B))
    hosts.manage("placement", "audit", "--verbose")  # fails the test unless it finds nothing wrong


def test_live_migrations_keep_the_guest_running(hosts, server):
    """Scheduled (the scheduler picks the only other host), then back to a named host (2.30)."""
    for target in (None, "named"):
        source = shown(hosts, server)["OS-EXT-SRV-ATTR:host"]
        before = uptimes(console_until(hosts, server, uptimes))[-1]
        args = ["--host", other(source)] if target else []
        hosts.openstack("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", *args,
                        "--wait", server, timeout=180)
        after = shown(hosts, server)
        assert (after["status"], after["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", other(source)), after
        log = console_until(hosts, server, lambda text: any(up > before + 2 for up in uptimes(text)), timeout=60)
        assert BOOTED not in log, log  # the destination's console never saw a boot: it kept running
        assert min(uptimes(log)) >= before - 2  # and its uptime went on from where it was
        assert_all_on(hosts, server, other(source))


def test_cold_migration_boots_the_guest_on_the_other_host(hosts, server):
    source = shown(hosts, server)["OS-EXT-SRV-ATTR:host"]
    address = re.search(r"10\.0\.0\.\d+", json.dumps(shown(hosts, server)["addresses"])).group(0)
    hosts.openstack("server", "migrate", "--wait", server, timeout=240)
    moved = shown(hosts, server)
    assert (moved["status"], moved["OS-EXT-SRV-ATTR:host"]) == ("VERIFY_RESIZE", other(source)), moved
    log = console_until(hosts, server, lambda text: f"{MARKER} ready" in text)
    assert log.count(BOOTED) == 1  # booted once, here
    assert console_lines(log, "disk-note")[0].startswith("acpi")  # its own disk, shut down cleanly on the source
    assert f"{MARKER} dhcp eth0 {address}/24" in log  # its port came along, served by this host's DHCP
    hosts.openstack("server", "migrate", "confirm", server)
    confirmed = wait_status(hosts, server, "ACTIVE", 60)
    assert (confirmed["status"], confirmed["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", other(source)), confirmed
    assert_all_on(hosts, server, other(source))
