"""A volume-backed server with a second volume, cold-migrated (confirmed, then reverted) and live-migrated on the
fake driver through openstacksdk: the volumes follow the server. What is checked is what the volume service
and the guest's host say: after each move each volume has one attachment, ``attached``, on the server's new
host (a cold move's source hands its connection over as upstream does it: a new attachment first, the old one
deleted; a live migration's destination connects its own before the guest comes, the source's goes after),
the destination's guest was given the connections it made, and after a revert they are the source's again.
"""
from __future__ import annotations

import uuid

from tests.cloud import wait_for

ADMIN = "kilonova"


def _attachments(conn, volume_id: str) -> list[dict]:
    return conn.block_storage.get_volume(volume_id).attachments


def _settled(conn, server_id: str, volume_ids: list[str], host: str) -> None:
    """Each volume in-use with exactly one attachment, to the server, on ``host``."""
    def check():
        found = {v: (conn.block_storage.get_volume(v).status, _attachments(conn, v)) for v in volume_ids}
        return all(status == "in-use" and [(a["server_id"], a["host_name"]) for a in held] == [(server_id, host)]
                   for status, held in found.values()) and found
    wait_for(check, f"the volumes of {server_id} attached on {host}", timeout=30)


def _wait(conn, server_id: str, status: str):
    return wait_for(lambda: (s := conn.compute.get_server(server_id)).status == status and s,
                    f"server {server_id} {status}", timeout=60)


def test_a_volume_backed_server_cold_migrates_with_its_volumes(cloud):
    conn = cloud.sdk(ADMIN)
    image_id = conn.image.find_image("kilonova-tiny").id
    data = conn.block_storage.create_volume(size=1, name=f"data-{uuid.uuid4().hex[:6]}")
    conn.block_storage.wait_for_status(data, "available", failures=["error"], interval=0.2, wait=60)
    server = conn.compute.create_server(
        name=f"bfv-move-{uuid.uuid4().hex[:6]}", flavor_id="1",
        networks=[{"uuid": conn.network.find_network("private").id}],
        block_device_mapping=[{"uuid": image_id, "source_type": "image", "destination_type": "volume",
                               "volume_size": 1, "boot_index": 0, "delete_on_termination": True},
                              {"uuid": data.id, "source_type": "volume", "destination_type": "volume",
                               "boot_index": -1}])
    try:
        server = conn.compute.wait_for_server(server, interval=0.2, wait=90)
        volumes = [v["id"] for v in server.attached_volumes]
        assert data.id in volumes and len(volumes) == 2
        source = server.compute_host
        _settled(conn, server.id, volumes, source)

        # Migrated and confirmed: the volumes are the destination's, the source holds nothing of them.
        conn.compute.migrate_server(server)
        moved = _wait(conn, server.id, "VERIFY_RESIZE")
        dest = moved.compute_host
        assert dest != source
        _settled(conn, server.id, volumes, dest)
        console = conn.compute.get_server_console_output(server.id)["output"]
        assert all(f"volume {v} connected on {dest} (local)" in console for v in volumes), console
        conn.compute.confirm_server_resize(server)
        _wait(conn, server.id, "ACTIVE")
        _settled(conn, server.id, volumes, dest)

        # Migrated again and reverted: the volumes come back to the host the server runs on again.
        conn.compute.migrate_server(server)
        third = _wait(conn, server.id, "VERIFY_RESIZE").compute_host
        _settled(conn, server.id, volumes, third)
        conn.compute.revert_server_resize(server)
        reverted = wait_for(lambda: (s := conn.compute.get_server(server.id)).status == "ACTIVE"
                            and s.compute_host == dest and s, "the revert", timeout=60)
        _settled(conn, server.id, volumes, reverted.compute_host)
        console = conn.compute.get_server_console_output(server.id)["output"]
        assert console.rstrip().count(f"connected on {dest} (local)") >= 2, console

        # Live-migrated: the destination's own attachments replace the source's once the guest moved.
        conn.compute.live_migrate_server(server, host=None, block_migration="auto")
        live = wait_for(lambda: (s := conn.compute.get_server(server.id)).status == "ACTIVE"
                        and s.compute_host != dest and s, "the live migration", timeout=60)
        _settled(conn, server.id, volumes, live.compute_host)
    finally:
        conn.compute.delete_server(server.id, ignore_missing=True)
        conn.compute.wait_for_delete(server, interval=0.2, wait=60)
        conn.block_storage.delete_volume(data.id, ignore_missing=True)
