"""The `cinder` CLI (python-cinderclient, which negotiates the highest microversion both sides know: 3.71)
against the block-storage service: create, list, show, extend, delete, and the attachment-* commands."""
from __future__ import annotations

import uuid


def _rows(output: str) -> dict[str, str]:
    """``cinder show``'s Property/Value table as a dict."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] and cells[0] != "Property":
            rows[cells[0]] = cells[1]
    return rows


def _wait_status(cloud, volume_id: str, status: str) -> None:
    conn = cloud.sdk("kilonova-demo")
    conn.block_storage.wait_for_status(conn.block_storage.get_volume(volume_id), status, wait=30, interval=0.2)


def test_cinder_create_list_show_attach_delete(cloud):
    made = _rows(cloud.cinder("create", "--name", "cinder-cli", "--description", "from cinder", "1",
                              cloud="kilonova-demo").stdout)
    volume_id = made["id"]
    try:
        _wait_status(cloud, volume_id, "available")
        listed = cloud.cinder("list", cloud="kilonova-demo").stdout
        assert volume_id in listed and "cinder-cli" in listed and "available" in listed
        summary = _rows(cloud.cinder("summary", cloud="kilonova-demo").stdout)
        assert int(summary["total_count"]) >= 1 and int(summary["total_size"]) >= 1
        assert "bootable" in cloud.cinder("list-filters", "--resource", "volume", cloud="kilonova-demo").stdout
        shown = _rows(cloud.cinder("show", "cinder-cli", cloud="kilonova-demo").stdout)
        assert shown["size"] == "1" and shown["description"] == "from cinder" and shown["multiattach"] == "False"
        assert shown["volume_type_id"]                       # 3.63: cinderclient shows it
        server = str(uuid.uuid4())                            # Cinder does not look the server up
        reserved = _rows(cloud.cinder("attachment-create", volume_id, server, cloud="kilonova-demo").stdout)
        assert reserved["status"] == "reserved" and reserved["instance"] == server
        connected = _rows(cloud.cinder("attachment-update", "--ip", "127.0.0.1", "--host",
                                       "compute1", "--mountpoint", "/dev/vdb", reserved["id"],
                                       cloud="kilonova-demo").stdout)
        assert connected["status"] == "attaching" and "local" in str(connected), connected
        cloud.cinder("attachment-complete", reserved["id"], cloud="kilonova-demo")
        attachments = cloud.cinder("attachment-list", "--volume-id", volume_id, cloud="kilonova-demo").stdout
        assert reserved["id"] in attachments and "attached" in attachments
        assert _rows(cloud.cinder("attachment-show", reserved["id"], cloud="kilonova-demo").stdout)["status"] \
            == "attached"
        refused = cloud.cinder("delete", volume_id, cloud="kilonova-demo", check=False)
        assert refused.returncode != 0 and "in-use" in (refused.stdout + refused.stderr)
        cloud.cinder("attachment-delete", reserved["id"], cloud="kilonova-demo")
        _wait_status(cloud, volume_id, "available")
        bad = cloud.cinder("create", "--volume-type", "no-such-type", "1", cloud="kilonova-demo", check=False)
        assert bad.returncode != 0 and "could not be found" in bad.stderr
    finally:
        cloud.cinder("delete", volume_id, cloud="kilonova-demo", check=False)
