"""kill -9 during the volume features that cross services, on a deployment with every service in its own OS
process (RabbitMQ + PostgreSQL; the package's, conftest.py; volumes are qcow2 files).

Assisted snapshots (os-assisted-volume-snapshots) of an attached volume: the host ``vs-a1`` holds its part at a
gate the test opens, so the volume service or the compute can be killed while the host has the request in hand.
Whatever dies, the snapshot ends (``available`` / gone, or ``error`` within ``[volume]
assisted_snapshot_timeout``), the volume's directory holds exactly the files its chain names (no overlay or
merge plan left behind), and the volume stays ``in-use`` by its server.

Cold and live migration of a server with a volume attached, cut by a kill of the source or the destination:
wherever the server ends, the volume has exactly one attachment, the one its server's mapping names, connected
for that server's host, and ``kilonova manage volume_attachment audit`` and the Placement audit are clean.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.distributed.cluster import boot_on, wait_for
from tests.distributed.moves.moves import (ASSIST_TIMEOUT, LIVE_DESTINATION_DEAD, MOVE_TIMEOUT, STALL,
                                         assert_audit_clean, delete, settled)
from tests.distributed.moves.moves import wait_status


def volume_state(cluster, volume_id: str) -> dict:
    return cluster.openstack("volume", "show", volume_id, fmt_json=True)


def attach_new_volume(cluster, api, uuid_: str, name: str) -> str:
    volume = cluster.openstack("volume", "create", "--size", "1", name, fmt_json=True)
    wait_for(lambda: volume_state(cluster, volume["id"])["status"] == "available", 60, f"{name} available", cluster)
    cluster.openstack("server", "add", "volume", uuid_, volume["id"])
    wait_for(lambda: volume_state(cluster, volume["id"])["status"] == "in-use", 60, f"{name} in-use", cluster)
    return volume["id"]


def attachments(cluster, volume_id: str) -> list[dict]:
    """Every attachment the volume service has of the volume, whatever its state (the attachments API)."""
    return cluster.openstack("--os-volume-api-version", "3.27", "volume", "attachment", "list", "--volume-id",
                             volume_id, fmt_json=True)


def assert_one_attachment(cluster, api, uuid_: str, volume_id: str, host: str) -> None:
    """The volume in-use by the server on ``host`` through one attachment: the one the server's mapping names."""
    held = attachments(cluster, volume_id)
    assert len(held) == 1, held
    shown = volume_state(cluster, volume_id)
    assert shown["status"] == "in-use", shown
    assert [(a["server_id"], a["host_name"]) for a in shown["attachments"]] == [(uuid_, host)], shown["attachments"]
    with cluster.compute_api("2.89") as compute:
        mappings = compute.get(f"/servers/{uuid_}/os-volume_attachments").json()["volumeAttachments"]
    assert [(m["volumeId"], m["attachment_id"]) for m in mappings] == [(volume_id, held[0]["ID"])], (mappings, held)


def assert_attachment_audit_clean(cluster) -> None:
    audit = cluster.manage("volume_attachment", "audit", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def volume_files(cluster, volume_id: str) -> set[str]:
    return {p.name for p in (cluster.state_dir / "volumes").glob(f"volume-{volume_id}*")}


def chain(cluster, volume_id: str) -> dict[str, str]:
    return json.loads((cluster.state_dir / "volumes" / f"volume-{volume_id}.info").read_text())


def assert_only_the_chain(cluster, volume_id: str) -> None:
    """The volume's files are its info file and the chain of qcow2 files under its active one (the snapshots'
    overlays among them): nothing half made left behind."""
    info = chain(cluster, volume_id)
    shown = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--backing-chain", "--output", "json",
                            str(cluster.state_dir / "volumes" / info["active"])], capture_output=True, text=True,
                           check=True)
    named = {Path(layer["filename"]).name for layer in json.loads(shown.stdout)} | set(info.values())
    assert volume_files(cluster, volume_id) == named | {f"volume-{volume_id}.info"}, info


# ---------------------------------------------------------------- assisted snapshots

def snapshot_status(cluster, snapshot_id: str) -> str | None:
    shown = cluster.openstack("volume", "snapshot", "show", snapshot_id, fmt_json=True, check=False)
    return shown["status"] if isinstance(shown, dict) else None


def gate_waits(cluster, step: str) -> int:
    """How many times ``vs-a1`` has waited at the gate of ``step`` (its log says so as it starts waiting)."""
    return cluster.processes["vs-a"].log.read_text(errors="replace").count(f"{step} waits at its gate")


def hold_at_gate(cluster, step: str, start) -> None:
    """Run ``start`` and return once vs-a1 holds the request at the gate of ``step``."""
    before = gate_waits(cluster, step)
    start()
    wait_for(lambda: gate_waits(cluster, step) > before, 60, f"{step} to reach the host", cluster)


def open_gate(cluster, step: str) -> None:
    """Let the held call go on, and return once the host has taken the gate."""
    gate = cluster.state_dir / "step-gates" / step
    gate.parent.mkdir(parents=True, exist_ok=True)
    gate.touch()
    wait_for(lambda: not gate.exists(), 30, f"the host to go on with {step}", cluster)


def take_snapshot(cluster, volume_id: str, name: str) -> str:
    """3.66: an in-use volume is snapshotted without ``force``."""
    return cluster.openstack("--os-volume-api-version", "3.66", "volume", "snapshot", "create", "--volume",
                             volume_id, name, fmt_json=True)["id"]


def test_a_volume_service_killed_while_the_host_snapshots_finishes_the_snapshot(cluster, api):
    """Killed (and down) while the host switches the guest's disk, then while it merges the snapshot away: the
    host's report, repeated until the restarted volume service takes it, finishes both."""
    uuid_ = boot_on(cluster, api, "vs-a1", "vs-restart")
    volume_id = attach_new_volume(cluster, api, uuid_, "vs-restart-vol")
    snapshot: dict[str, str] = {}
    hold_at_gate(cluster, "volume_snapshot_create",
                 lambda: snapshot.setdefault("id", take_snapshot(cluster, volume_id, "vs-restart-snap")))
    overlay = f"volume-{volume_id}.{snapshot['id']}"
    assert overlay in volume_files(cluster, volume_id)   # made before the host was asked
    cluster.processes["volume"].kill()
    open_gate(cluster, "volume_snapshot_create")   # the host switches the disk and cannot report it yet
    cluster.restart("volume")
    wait_for(lambda: snapshot_status(cluster, snapshot["id"]) == "available", ASSIST_TIMEOUT + 30,
             "the snapshot to be available", cluster)
    assert chain(cluster, volume_id)["active"] == overlay
    assert_only_the_chain(cluster, volume_id)

    hold_at_gate(cluster, "volume_snapshot_delete",
                 lambda: cluster.openstack("volume", "snapshot", "delete", snapshot["id"]))
    assert f"{overlay}.delete" in volume_files(cluster, volume_id)   # the merge's plan, written before asking
    cluster.processes["volume"].kill()
    open_gate(cluster, "volume_snapshot_delete")
    cluster.restart("volume")
    wait_for(lambda: snapshot_status(cluster, snapshot["id"]) is None, ASSIST_TIMEOUT + 30,
             "the snapshot to be deleted", cluster)
    # The overlay was the active file: it pulled the base's data and the base went.
    assert chain(cluster, volume_id) == {"active": overlay}
    assert_only_the_chain(cluster, volume_id)
    assert volume_files(cluster, volume_id) == {overlay, f"volume-{volume_id}.info"}
    assert_one_attachment(cluster, api, uuid_, volume_id, "vs-a1")
    delete(cluster, api, uuid_)
    wait_for(lambda: volume_state(cluster, volume_id)["status"] == "available", 60, "the volume freed", cluster)
    cluster.openstack("volume", "delete", volume_id)
    wait_for(lambda: not volume_files(cluster, volume_id), 60, "the volume's files to go", cluster)


def test_a_compute_killed_while_it_snapshots_ends_the_snapshot_in_error_at_the_deadline(cluster, api):
    uuid_ = boot_on(cluster, api, "vs-a1", "vs-compute")
    volume_id = attach_new_volume(cluster, api, uuid_, "vs-compute-vol")
    before = chain(cluster, volume_id)
    snapshot: dict[str, str] = {}
    hold_at_gate(cluster, "volume_snapshot_create",
                 lambda: snapshot.setdefault("id", take_snapshot(cluster, volume_id, "vs-compute-snap")))
    cluster.processes["vs-a"].kill()
    # Nobody will report: at the deadline the snapshot is an error, and its overlay (no guest holds it) goes.
    wait_for(lambda: snapshot_status(cluster, snapshot["id"]) == "error", ASSIST_TIMEOUT + 30,
             "the snapshot to end in error", cluster)
    assert chain(cluster, volume_id) == before
    assert_only_the_chain(cluster, volume_id)
    cluster.restart("vs-a")
    cluster.openstack("volume", "snapshot", "delete", snapshot["id"])
    wait_for(lambda: snapshot_status(cluster, snapshot["id"]) is None, 60, "the error snapshot deleted", cluster)
    assert_one_attachment(cluster, api, uuid_, volume_id, "vs-a1")
    delete(cluster, api, uuid_)
    wait_for(lambda: volume_state(cluster, volume_id)["status"] == "available", 60, "the volume freed", cluster)
    assert attachments(cluster, volume_id) == []
    cluster.openstack("volume", "delete", volume_id)


def test_a_compute_killed_while_it_extends_an_attached_volume_ends_the_extend_at_the_deadline(cluster, api):
    """An attached qcow2 volume is grown by its host (os-extend_volume_completion): a host killed before it did
    never answers; at the deadline the file's size says it was not grown: error_extending, the old size."""
    uuid_ = boot_on(cluster, api, "vs-a1", "vs-extend")
    volume_id = attach_new_volume(cluster, api, uuid_, "vs-extend-vol")
    hold_at_gate(cluster, "extend_volume",
                 lambda: cluster.cinder("--os-volume-api-version", "3.42", "extend", volume_id, "2"))
    shown = volume_state(cluster, volume_id)
    assert (shown["status"], shown["properties"].get("extend_new_size")) == ("extending", "2")
    cluster.processes["vs-a"].kill()
    shown = wait_for(lambda: (v := volume_state(cluster, volume_id))["status"] == "error_extending" and v,
                     ASSIST_TIMEOUT + 30, "the extend to be ended", cluster)
    assert shown["size"] == 1 and "extend_new_size" not in shown["properties"]
    cluster.restart("vs-a")
    cluster.cinder("reset-state", "--state", "in-use", volume_id)   # the operator's way back, as Cinder's
    assert_one_attachment(cluster, api, uuid_, volume_id, "vs-a1")
    delete(cluster, api, uuid_)
    wait_for(lambda: volume_state(cluster, volume_id)["status"] == "available", 60, "the volume freed", cluster)
    cluster.openstack("volume", "delete", volume_id)


# ---------------------------------------------------------------- moves with a volume

def migrate(api, uuid_: str, host: str, live: bool = False) -> None:
    body = {"os-migrateLive": {"host": host, "block_migration": "auto"}} if live else {"migrate": {"host": host}}
    response = api.post(f"/servers/{uuid_}/action", json=body)
    assert response.status_code == 202, response.text


def finish_with_the_volume(cluster, api, uuid_: str, volume_id: str, host: str) -> None:
    assert_one_attachment(cluster, api, uuid_, volume_id, host)
    assert_attachment_audit_clean(cluster)
    assert_audit_clean(cluster)
    delete(cluster, api, uuid_)
    wait_for(lambda: volume_state(cluster, volume_id)["status"] == "available", 60, "the volume freed", cluster)
    assert attachments(cluster, volume_id) == []
    cluster.openstack("volume", "delete", volume_id)


# (source, destination, live, the record's status when the process is killed, the killed process, the record's
# end, how long that may take, where the server and its volume end).
MOVES = {
    # in finish_migration: the volume was handed over to the destination
    "cold-destination-dies": ("rz-a1", "rz-b1", False, "post-migrating", "rz-b", "error", MOVE_TIMEOUT + 60, "rz-a1"),
    "cold-source-dies": ("rz-c1", "rz-a1", False, "migrating", "rz-c", "error", 2 * MOVE_TIMEOUT + 60, "rz-c1"),
    # the destination's attachment, made before the guest moves, is known to the dead source only
    "live-source-dies": ("lm-a1", "lm-b1", True, "running", "lm-a", "error", STALL + 60, "lm-a1"),
    "live-destination-dies": ("lm-a1", "lm-b1", True, "running", "lm-b", "completed", LIVE_DESTINATION_DEAD + 60,
                              "lm-b1"),
}


@pytest.mark.parametrize("case", list(MOVES))
def test_a_move_cut_by_a_kill_leaves_the_volume_attached_once_where_the_server_is(cluster, api, case):
    source, dest, live, running, killed, ended, timeout, host = MOVES[case]
    kind = "live-migration" if live else "migration"
    uuid_ = boot_on(cluster, api, source, f"{case}-{uuid.uuid4().hex[:4]}")
    volume_id = attach_new_volume(cluster, api, uuid_, f"{case}-vol")
    migrate(api, uuid_, dest, live)
    wait_status(cluster, api, uuid_, kind, (running,), 30, f"the move to be {running}")
    cluster.processes[killed].kill()
    wait_status(cluster, api, uuid_, kind, (ended,), timeout, f"the move to end {ended}")
    assert settled(cluster, api, uuid_)["OS-EXT-SRV-ATTR:host"] == host
    cluster.restart(killed)
    finish_with_the_volume(cluster, api, uuid_, volume_id, host)
