"""Snapshots and extends of a qcow2 volume a running real guest has open, through the volume service and the compute
service's os-assisted-volume-snapshots, as Cinder's file-based drivers take them with Nova (`kilonova up`
with ``[volume] volume_format = qcow2`` and the libvirt driver; openstacksdk).

The guest writes its note on the hot-plugged volume. A snapshot (``force``: in-use) makes the volume service
put an overlay on the volume's file and the compute host switch the guest's disk onto it (an external
disk-only snapshot): the live domain then writes the overlay, over the frozen file that holds the snapshot,
and the host's connection names the overlay. A volume made from the snapshot holds the note. The guest writes
a second note (typed on its serial console) and a second snapshot puts a second overlay on top. The older
snapshot deleted while the guest writes on makes the host commit its overlay into the file below (a block
commit): the live chain skips it, the file is gone, the guest reads both notes and what it wrote meanwhile, and
a volume made from the remaining snapshot holds both notes. That one deleted makes the host pull the frozen
file's data into the active overlay (a block rebase): the old file is gone and the domain's disk has no backing
file. The volume then detaches cleanly and, attached again, the guest reads its notes back. Both tests
hot-plug their volumes into the module's one guest."""
from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from tests.cloud import wait_for
from tests.libvirt.hostsetup import MARKER
from tests.libvirt.test_real_guest import upload_guest, wait_console
from tests.libvirt.test_real_guest_interfaces import VIRSH, _xml
from tests.libvirt.test_real_guest_volumes import real_volume_cloud

HOST = "kilonova-assisted-test"
GIB = 1024 ** 3
SECOND_SECTOR, TICK_SECTOR = 8, 64   # where on the volume the guest writes its second note and its ticks

# The guest's user-data script: lines typed on its serial console are the test's hands inside it.
#   note DISK SECTOR TEXT   TEXT written there and flushed
#   read DISK SECTOR...     each sector's first line (" | " between them), read from the disk, its caches dropped
#   churn DISK SECTOR       "TICK <n>" written there and flushed, n counting up, until "halt" (which says the last)
CONSOLE_COMMANDS = r"""#!/bin/sh
stty -F /dev/ttyS0 -echo 2>/dev/null
while read -r verb dev sector text; do
    case "$verb" in
        note) printf '%s\n' "$text" > /tmp/typed
              dd if=/tmp/typed of=/dev/$dev bs=512 seek=$sector conv=notrunc 2>/dev/null; sync
              echo "@MARKER@ noted $dev $sector: $text" ;;
        read) sync; echo 3 > /proc/sys/vm/drop_caches; got=""
              for n in $sector $text; do
                  line=$(dd if=/dev/$dev bs=512 skip=$n count=1 2>/dev/null | tr -d '\000' | head -n 1)
                  got="${got:+$got | }$line"
              done
              echo "@MARKER@ read $dev $sector${text:+ $text}: $got" ;;
        churn) rm -f /tmp/halt /tmp/ticks
               (n=0; while [ ! -e /tmp/halt ]; do
                    n=$((n + 1)); printf 'TICK %s\n' $n > /tmp/tick
                    dd if=/tmp/tick of=/dev/$dev bs=512 seek=$sector conv=notrunc 2>/dev/null; sync
                    echo $n > /tmp/ticks; usleep 20000
                done) &
               churner=$!
               echo "@MARKER@ churning $dev" ;;
        halt) touch /tmp/halt; wait $churner
              echo "@MARKER@ halted at TICK $(cat /tmp/ticks)" ;;
    esac
done < /dev/ttyS0
""".replace("@MARKER@", MARKER)


@pytest.fixture(scope="module")
def cloud(guest):
    with real_volume_cloud(HOST, volume_format="qcow2") as instance:
        yield instance


@pytest.fixture(scope="module")
def server(cloud, guest, tmp_path_factory):
    """The module's one guest (a real guest's boot is the dearest step): each test hot-plugs its own volume and
    leaves it detached."""
    image = upload_guest(cloud, guest, "assisted")
    cloud.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "real.assisted")
    script = tmp_path_factory.mktemp("assisted") / "user-data"
    script.write_text(CONSOLE_COMMANDS)
    uuid = cloud.openstack("server", "create", "--flavor", "real.assisted", "--image", image["id"], "--network",
                           "private", "--config-drive", "true", "--user-data", str(script), "--wait",
                           "assisted-vm", fmt_json=True, timeout=180)["id"]
    wait_console(cloud, uuid, f"{MARKER} ready", timeout=180)   # a disk there at its boot is not hot-plugged
    yield uuid
    cloud.sdk().compute.delete_server(uuid, ignore_missing=True)


def _disks_gone_seen(cloud, server: str) -> None:
    """The guest looks for new disks every 2 s: let it see a detached one gone (two heartbeats) before another
    comes, or it never notices that the disk it sees under the same name is a new one."""
    with cloud.http("compute") as api:
        def heartbeats() -> int:
            return api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json()["output"] \
                .count(f"{MARKER} alive")
        seen = heartbeats()
        wait_for(lambda: heartbeats() >= seen + 2, "two heartbeats of the guest without the disk", timeout=30)


def _attached_note(cloud, server: str, attach) -> tuple[str, str]:
    """(device, note) of the volume ``attach()`` hot-plugs: the guest writes its note on a blank disk."""
    pattern = re.compile(rf"{MARKER} volume (vd\w) written: (KILONOVA-VOLUME-NOTE from \S+)\r*\n")
    with cloud.http("compute") as api:
        def written() -> list:
            return pattern.findall(api.post(f"/servers/{server}/action",
                                            json={"os-getConsoleOutput": {}}).json()["output"])
        before = len(written())
        attach()
        wait_for(lambda: len(written()) > before, "the guest's note on the new disk", timeout=90)
        return written()[before]


def _disk(server_id: str, volume_id: str) -> ET.Element:
    """The live domain's disk of the volume (by its serial)."""
    tree = ET.fromstring(_xml(server_id))
    return next(d for d in tree.findall("./devices/disk") if d.findtext("serial") == volume_id[:20])


def _chain(server_id: str, volume_id: str) -> list[str]:
    """The files of the live disk of the volume, the active one first, as the domain's XML names them."""
    chain, node = [], _disk(server_id, volume_id)
    while node is not None and node.find("source") is not None:
        chain.append(node.find("source").get("file"))
        node = node.find("backingStore")
    return chain


def _lines(path: Path, fmt: str, *sectors: int) -> list[str]:
    """The first line of each of these 512-byte sectors of the disk a file holds (read as ``fmt``; only the
    sectors up to the last one asked are read)."""
    out = path.with_name(path.name + ".read")
    subprocess.run(["qemu-img", "dd", "-U", "-f", fmt, "-O", "raw", "bs=512", f"count={max(sectors) + 1}",
                    f"if={path}", f"of={out}"], check=True, capture_output=True)
    try:
        data = out.read_bytes()
    finally:
        out.unlink()
    return [data[512 * s:512 * (s + 1)].split(b"\n")[0].rstrip(b"\0").decode() for s in sectors]


def _type(cloud, server: str, line: str, answer: str, timeout: float = 60) -> str:
    """``line`` typed on the guest's serial console (libvirt's console stream), and its answer: the first group
    of ``answer`` (a regex after the marker) on the next such whole line the guest prints."""
    pattern = re.compile(rf"{MARKER} {answer}\r*\n")
    host = libvirt.open("qemu:///system")
    stream = host.newStream(0)
    try:
        with cloud.http("compute") as api:
            def console() -> str:
                return api.post(f"/servers/{server}/action", json={"os-getConsoleOutput": {}}).json()["output"]
            before = len(pattern.findall(console()))
            host.lookupByName(f"instance-{server}").openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            stream.send(f"{line}\n".encode())
            deadline = time.monotonic() + timeout
            while len(found := pattern.findall(output := console())) <= before:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer to {line!r} on the console of {server}:\n{output[-3000:]}")
                time.sleep(0.2)
            return found[before] if pattern.groups else line
    finally:
        try:
            stream.abort()
        finally:
            host.close()


def _read(cloud, server: str, device: str, *sectors: int) -> list[str]:
    """What the guest reads from these sectors of its disk (each one's first line)."""
    at = " ".join(map(str, sectors))
    return _type(cloud, server, f"read {device} {at}", rf"read {device} {at}: ([^\r]*)").split(" | ")


def test_a_running_guest_volume_is_snapshotted_and_merged_by_its_host(cloud, server):
    conn = cloud.sdk()
    storage, volumes = conn.block_storage, cloud.volumes_dir
    volume = storage.wait_for_status(storage.create_volume(size=1, name="assisted"), "available",
                                     failures=["error"], interval=0.2, wait=60)
    device, written = _attached_note(cloud, server,
                                     lambda: conn.compute.create_volume_attachment(server, volume_id=volume.id))
    base = volumes / f"volume-{volume.id}"
    assert _disk(server, volume.id).find("driver").get("type") == "qcow2"

    # Taken with the host's help: the guest's disk is the overlay now, over the frozen file.
    older = storage.create_snapshot(volume_id=volume.id, name="assisted-snap", force=True)
    older = storage.wait_for_status(older, "available", failures=["error"], interval=0.2, wait=90)
    overlay = volumes / f"volume-{volume.id}.{older.id}"
    disk = _disk(server, volume.id)
    assert disk.find("source").get("file") == str(overlay), ET.tostring(disk)
    assert disk.find("backingStore/source").get("file") == str(base), ET.tostring(disk)
    attachment = storage.get_volume(volume.id).attachments[0]["attachment_id"]
    with cloud.http("block-storage") as api:
        shown = api.get(f"/v3/{conn.current_project_id}/attachments/{attachment}",
                        headers={"OpenStack-API-Version": "volume 3.44"}).json()["attachment"]
    assert shown["connection_info"]["data"]["device_path"] == str(overlay), shown

    # A volume from the snapshot holds what the guest wrote before it.
    copy = storage.wait_for_status(storage.create_volume(snapshot_id=older.id, name="from-assisted"),
                                   "available", failures=["error"], interval=0.2, wait=60)
    assert _lines(volumes / f"volume-{copy.id}", "qcow2", 0) == [written]

    # A second note, then a second snapshot: base <- overlay <- newest overlay (the guest's disk).
    second = f"KILONOVA-SECOND-NOTE {volume.id[:8]}"
    _type(cloud, server, f"note {device} {SECOND_SECTOR} {second}", rf"noted {device} {SECOND_SECTOR}: {second}")
    newer = storage.create_snapshot(volume_id=volume.id, name="assisted-snap-2", force=True)
    newer = storage.wait_for_status(newer, "available", failures=["error"], interval=0.2, wait=90)
    newest = volumes / f"volume-{volume.id}.{newer.id}"
    assert _chain(server, volume.id) == [str(newest), str(overlay), str(base)]

    # The older snapshot deleted while the guest writes on: its overlay is committed into the file below it
    # (a block commit under the live disk), the chain skips it and it goes.
    _type(cloud, server, f"churn {device} {TICK_SECTOR}", f"churning {device}")
    storage.delete_snapshot(older)
    storage.wait_for_delete(older, interval=0.2, wait=90)
    ticks = _type(cloud, server, "halt", r"halted at (TICK \d+)")
    assert _chain(server, volume.id) == [str(newest), str(base)]
    assert not overlay.exists() and base.exists()
    header = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output", "json", str(newest)],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(header)["backing-filename"] == base.name   # still relative: the directory may move
    assert _read(cloud, server, device, 0, SECOND_SECTOR, TICK_SECTOR) == [written, second, ticks]
    # The remaining snapshot still holds both notes (its data is now the file the older one went into).
    again = storage.wait_for_status(storage.create_volume(snapshot_id=newer.id, name="from-assisted-2"),
                                    "available", failures=["error"], interval=0.2, wait=60)
    assert _lines(volumes / f"volume-{again.id}", "qcow2", 0, SECOND_SECTOR) == [written, second]

    # The newest deleted while the guest runs: the active file pulls the frozen file in, which goes.
    storage.delete_snapshot(newer)
    storage.wait_for_delete(newer, interval=0.2, wait=90)
    assert _chain(server, volume.id) == [str(newest)]
    assert not base.exists()

    # It detaches cleanly (the host's connection names the newest overlay) and, back, the guest reads its notes.
    conn.compute.delete_volume_attachment(volume.id, server)
    wait_for(lambda: storage.get_volume(volume.id).status == "available", "the detach", timeout=60)
    # (read once QEMU has let go of the file)
    assert _lines(newest, "qcow2", 0, SECOND_SECTOR) == [written, second]
    _disks_gone_seen(cloud, server)
    conn.compute.create_volume_attachment(server, volume_id=volume.id)
    log = wait_console(cloud, server, f"{MARKER} volume {device} holds:")
    assert f"{MARKER} volume {device} holds: {written}" in log, log
    assert _read(cloud, server, device, SECOND_SECTOR) == [second]
    conn.compute.delete_volume_attachment(volume.id, server)
    wait_for(lambda: storage.get_volume(volume.id).status == "available", "the second detach", timeout=60)
    for made in (volume, copy, again):
        storage.delete_volume(made)
    wait_for(lambda: not list(volumes.glob(f"volume-{volume.id}*")), "the volume's files gone", timeout=60)


def test_a_running_guest_volume_is_extended_by_its_host(cloud, server):
    """An attached qcow2 volume extended (cinder extend, 3.42): the host's QEMU grows the file (block resize,
    os-extend_volume_completion), the guest's disk has the new capacity, the volume its new size."""
    volume = cloud.openstack("volume", "create", "--size", "1", "extend-vol", fmt_json=True)["id"]
    wait_for(lambda: cloud.openstack("volume", "show", volume, fmt_json=True)["status"] == "available",
             "the volume", timeout=60)
    _disks_gone_seen(cloud, server)   # (the other test's volume, if it ran)
    _attached_note(cloud, server, lambda: cloud.openstack("server", "add", "volume", server, volume))
    target = _disk(server, volume).find("target").get("dev")

    def capacity() -> int:
        shown = subprocess.run([*VIRSH, "domblkinfo", f"instance-{server}", target], capture_output=True,
                               text=True, check=True).stdout
        return int(re.search(r"Capacity:\s+(\d+)", shown).group(1))

    assert capacity() == GIB
    cloud.cinder("--os-volume-api-version", "3.42", "extend", volume, "2")
    wait_for(lambda: (v := cloud.openstack("volume", "show", volume, fmt_json=True))["status"] == "in-use"
             and v["size"] == 2, "the host's completion", timeout=90)
    assert capacity() == 2 * GIB
    info = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output", "json",
                           str(cloud.volumes_dir / f"volume-{volume}")], capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["virtual-size"] == 2 * GIB
    cloud.openstack("server", "delete", "--wait", server, timeout=120)
    wait_for(lambda: cloud.openstack("volume", "show", volume, fmt_json=True)["status"] == "available",
             "the detach at delete", timeout=60)
    cloud.openstack("volume", "delete", volume)
