"""A volume-backed real guest cold-migrated between two libvirt hosts, its volumes carried over NBD.

The deployment is ``two_hosts`` with the volume service on the control plane: host A shares the volume
host's address (it opens the volumes' files: ``local``), host B is on another address, in its own network
namespace (the volume service exports each volume it connects with ``qemu-nbd`` on the veth pair, and QEMU
on host B opens it with its own NBD client). The guest boots from a volume on host A; a second volume is
hot-plugged and the guest writes a note on it. Cold-migrated to host B and confirmed, the guest boots
there from its volume over NBD: the root volume's note says the guest was shut down cleanly on host A,
and a user-data script reads the data volume's note back at boot. The data volume is then hot-unplugged
over NBD (its export stops); live-migrated back to host A the guest runs on from the root volume's file (the
last export stops). The data volume is hot-plugged again and host A fails: its compute service is killed,
its guest destroyed, the service forced down, and the server evacuated to host B, which makes new attachments
of both volumes (the old ones deleted) and boots the guest from its root volume over NBD: the guest says its
previous boot ended uncleanly (the same disk) and reads the data volume's note. Host A's compute service comes
back and cleans up without touching the attachments; the server is deleted.
"""
from __future__ import annotations

import re
import subprocess
import time
from xml.etree import ElementTree

import pytest

from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import console_lines, upload_guest, wait_status
from tests.libvirt.test_real_guest_volumes import _volume_status as volume_status
from tests.distributed.cluster import Process
from tests.libvirt.two_hosts import HOST_A, HOST_B

# Run by the guest's init at each boot (from the config drive): the note of every disk that holds one.
READ_NOTES = f"""#!/bin/sh
for d in /sys/block/vd*; do
    n=${{d##*/}}
    note=$(dd if=/dev/$n bs=512 count=1 2>/dev/null | tr -d '\\000' | head -n 1)
    case "$note" in KILONOVA-VOLUME-NOTE*) echo "{MARKER} at-boot $n holds: $note" ;; esac
done
"""


@pytest.fixture(scope="module")
def hosts(guest):
    from tests.libvirt.second_host import SecondHostError
    from tests.libvirt.two_hosts import two_libvirt_hosts

    try:
        with two_libvirt_hosts(guest, volumes=True) as deployment:
            yield deployment
    except SecondHostError as exc:
        pytest.skip(f"cannot run a second libvirtd here: {exc}")


def console_until(hosts, uuid: str, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    with hosts.http("compute") as api:
        while True:
            log = api.post(f"/servers/{uuid}/action", json={"os-getConsoleOutput": {}}).json()["output"]
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared on the console of {uuid}:\n{log[-3000:]}\n"
                                     f"{hosts.logs()}")
            time.sleep(0.3)


def domain_xml(hosts, host: str) -> str:
    (name,) = hosts.domains(host)
    return subprocess.run(["virsh", "-c", hosts.libvirt_uri(host), "dumpxml", name], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def exports(hosts) -> set[str]:
    """The volumes the volume service serves over NBD now (its records of its qemu-nbd processes)."""
    return {path.name[4:] for path in (hosts.workdir / "volumes").glob("nbd-*")}


def test_a_volume_backed_guest_moves_to_a_host_that_reaches_its_volumes_over_nbd_and_back(hosts, guest, tmp_path):
    os_ = hosts.openstack
    image = upload_guest(hosts, guest, "bfv-moves")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "bfv.small")
    script = tmp_path / "read-notes.sh"
    script.write_text(READ_NOTES)
    server = os_("--os-compute-api-version", "2.74", "server", "create", "--flavor", "bfv.small", "--image",
                 image["id"], "--boot-from-volume", "1", "--config-drive", "true", "--user-data", str(script),
                 "--network", "private", "--host", HOST_A, "--wait", "bfv-mover", fmt_json=True, timeout=240)["id"]
    console_until(hosts, server, f"{MARKER} ready")
    conn = hosts.sdk()   # the rest through openstacksdk (a forked CLI costs seconds a call here), moves by the CLI
    (root,) = [v["id"] for v in conn.compute.get_server(server).attached_volumes]
    assert "protocol='nbd'" not in domain_xml(hosts, HOST_A) and not exports(hosts)  # host A: the file itself

    data = conn.block_storage.create_volume(size=1, name="bfv-data").id
    volume_status(hosts, data, "available")
    conn.compute.create_volume_attachment(server, volume_id=data)
    volume_status(hosts, data, "in-use")
    log = console_until(hosts, server, "written: KILONOVA-VOLUME-NOTE")
    (written,) = re.findall(rf"{MARKER} volume (vd\w) written: (KILONOVA-VOLUME-NOTE from \S+)", log)

    hosts.openstack("server", "migrate", "--wait", server, timeout=240)
    moved = wait_status(hosts, server, "VERIFY_RESIZE", 60)
    assert moved["OS-EXT-SRV-ATTR:host"] == HOST_B, moved
    log = console_until(hosts, server, f"{MARKER} ready")
    # Booted from its volume over NBD: the note the guest wrote on it while shutting down on host A.
    assert console_lines(log, "disk-note")[-1].startswith("acpi"), log
    # The data volume, at the same device, with the note the guest wrote on host A.
    assert f"{MARKER} at-boot {written[0]} holds: {written[1]}" in log, log
    xml = domain_xml(hosts, HOST_B)
    assert xml.count("protocol='nbd'") == 2 and f"name='{root}'" in xml and f"name='{data}'" in xml, xml
    assert exports(hosts) == {root, data}
    with hosts.http("block-storage") as api:
        project = conn.current_project_id
        for volume_id in (root, data):
            (attachment,) = api.get(f"/v3/{project}/volumes/{volume_id}").json()["volume"]["attachments"]
            assert attachment["host_name"] == HOST_B, attachment

    conn.compute.confirm_server_resize(server)
    confirmed = wait_status(hosts, server, "ACTIVE", 60)
    assert confirmed["OS-EXT-SRV-ATTR:host"] == HOST_B and not hosts.domains(HOST_A)

    # Hot-unplugged over NBD: gone from the guest, the volume available, its export stopped.
    conn.compute.delete_volume_attachment(data, server)
    volume_status(hosts, data, "available")
    assert f"name='{data}'" not in domain_xml(hosts, HOST_B) and exports(hosts) == {root}

    # Live-migrated back to host A, which opens the root volume's file: the guest runs on (no boot), its
    # disk is the file there, the NBD export stops and the volume's one attachment is host A's.
    os_("--os-compute-api-version", "2.30", "server", "migrate", "--live-migration", "--host", HOST_A, "--wait",
        server, timeout=180)
    back = wait_status(hosts, server, "ACTIVE", 60)
    assert back["OS-EXT-SRV-ATTR:host"] == HOST_A and not hosts.domains(HOST_B), back
    xml = domain_xml(hosts, HOST_A)
    assert "protocol='nbd'" not in xml and f"volume-{root}" in xml, xml
    assert not exports(hosts)
    with hosts.http("block-storage") as api:
        (attachment,) = api.get(f"/v3/{project}/volumes/{root}").json()["volume"]["attachments"]
        assert attachment["host_name"] == HOST_A, attachment
    log = console_until(hosts, server, f"{MARKER} alive")
    assert f"{MARKER} booted kernel" not in log, log   # host A's console never saw a boot: it kept running

    _evacuate_to_host_b(hosts, conn, server, root, data, written)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(conn.compute.get_server(server), interval=0.3, wait=120)
    volume_status(hosts, root, "available")
    assert not exports(hosts)
    for volume_id in (root, data):
        conn.block_storage.delete_volume(volume_id)


def _attachments(hosts, project: str, volume_ids: tuple[str, ...]) -> dict[str, dict]:
    with hosts.http("block-storage") as api:
        return {v: api.get(f"/v3/{project}/volumes/{v}").json()["volume"]["attachments"] for v in volume_ids}


def _evacuate_to_host_b(hosts, conn, server: str, root: str, data: str, written: tuple[str, str]) -> None:
    os_ = hosts.openstack
    conn.compute.create_volume_attachment(server, volume_id=data)
    volume_status(hosts, data, "in-use")
    console_until(hosts, server, f"holds: {written[1]}")
    project = conn.current_project_id
    before = {v: a["attachment_id"] for v, (a,) in _attachments(hosts, project, (root, data)).items()}

    # Host A fails: its compute service dies, and its guest with it (fenced, as upstream requires).
    hosts.processes[HOST_A].kill()
    (domain,) = hosts.domains(HOST_A)
    subprocess.run(["virsh", "-c", hosts.libvirt_uri(HOST_A), "destroy", domain], check=True, capture_output=True)
    os_("--os-compute-api-version", "2.53", "compute", "service", "set", "--down", HOST_A, "nova-compute")
    os_("--os-compute-api-version", "2.94", "server", "evacuate", server)  # before 2.95: it runs there
    moved = wait_status(hosts, server, "ACTIVE", 120)
    assert moved["OS-EXT-SRV-ATTR:host"] == HOST_B, moved

    # Booted on host B from the very root volume: its last boot, on host A, never ended cleanly; the data
    # volume holds the note written on host A.
    log = console_until(hosts, server, f"{MARKER} disk-note unclean")
    log = console_until(hosts, server, f"{MARKER} ready")[log.rindex(f"{MARKER} disk-note unclean"):]
    assert re.search(rf"{MARKER} at-boot vd\w holds: {written[1]}", log), log
    xml = domain_xml(hosts, HOST_B)
    sources = {d.find("target").get("dev"): d.find("source") for d in ElementTree.fromstring(xml).iter("disk")}
    assert (sources["vda"].get("protocol"), sources["vda"].get("name")) == ("nbd", root), xml  # its root disk
    assert f"name='{data}'" in xml and exports(hosts) == {root, data}
    after = _attachments(hosts, project, (root, data))
    assert all([a["host_name"] for a in held] == [HOST_B] for held in after.values()), after
    assert not {a["attachment_id"] for held in after.values() for a in held} & set(before.values())
    with hosts.http("block-storage") as api:
        for attachment_id in before.values():  # the failed host's attachments are gone
            shown = api.get(f"/v3/{project}/attachments/{attachment_id}",
                            headers={"OpenStack-API-Version": "volume 3.27"})
            assert shown.status_code == 404, shown.text

    # Host A comes back: its stale domain goes, the attachments (host B's) stay.
    hosts.processes[HOST_A] = Process(HOST_A, ["--config", str(hosts.workdir / f"{HOST_A}.conf"), "serve",
                                               "compute"], hosts.workdir / f"{HOST_A}.log")
    hosts.processes[HOST_A].wait_ready(120)
    with hosts.http("compute") as api:
        api.headers["OpenStack-API-Version"] = "compute 2.59"
        deadline = time.monotonic() + 60
        while [m["status"] for m in api.get("/os-migrations", params={"instance_uuid": server, "migration_type":
                                                                     "evacuation"}).json()["migrations"]] \
                != ["completed"]:
            assert time.monotonic() < deadline, f"host A never cleaned up the evacuated guest\n{hosts.logs()}"
            time.sleep(0.5)
    assert _attachments(hosts, project, (root, data)) == after and exports(hosts) == {root, data}
