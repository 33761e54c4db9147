"""Block storage through the real `openstack` CLI and openstacksdk: volumes, types, quotas, limits."""
from __future__ import annotations

import os
import time

import httpx


def _volume_file(cloud, volume_id: str):
    return cloud.state_dir / "volumes" / f"volume-{volume_id}"


def test_volume_lifecycle_with_cli(cloud):
    created = cloud.openstack("volume", "create", "--size", "1", "--description", "first",
                              "--property", "tier=gold", "demo-volume", cloud="kilonova-demo", fmt_json=True)
    try:
        assert created["size"] == 1 and created["name"] == "demo-volume"
        deadline = time.monotonic() + 30
        while True:
            shown = cloud.openstack("volume", "show", "demo-volume", cloud="kilonova-demo", fmt_json=True)
            if shown["status"] == "available" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert shown["status"] == "available" and shown["bootable"] is False
        assert shown["type"] == "__DEFAULT__" and shown["availability_zone"] == "nova"
        assert shown["properties"] == {"tier": "gold"}
        path = _volume_file(cloud, created["id"])
        assert os.path.getsize(path) == 1024 ** 3   # a real (sparse) 1 GiB file
        listed = cloud.openstack("volume", "list", cloud="kilonova-demo", fmt_json=True)
        assert [v["Name"] for v in listed if v["ID"] == created["id"]] == ["demo-volume"]
        # another project does not see it; an admin does with --all-projects
        assert created["id"] not in [v["ID"] for v in cloud.openstack("volume", "list", fmt_json=True)]
        assert created["id"] in [v["ID"] for v in cloud.openstack("volume", "list", "--all-projects",
                                                                   fmt_json=True)]
        cloud.openstack("volume", "set", "--name", "renamed", "--description", "second", "--property", "a=b",
                        "demo-volume", cloud="kilonova-demo")
        shown = cloud.openstack("volume", "show", "renamed", cloud="kilonova-demo", fmt_json=True)
        assert shown["description"] == "second" and shown["properties"] == {"tier": "gold", "a": "b"}
        cloud.openstack("volume", "set", "--size", "2", "renamed", cloud="kilonova-demo")
        deadline = time.monotonic() + 30
        while shown["size"] != 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            shown = cloud.openstack("volume", "show", "renamed", cloud="kilonova-demo", fmt_json=True)
        assert shown["size"] == 2 and os.path.getsize(path) == 2 * 1024 ** 3
    finally:
        cloud.openstack("volume", "delete", created["id"], cloud="kilonova-demo")
    deadline = time.monotonic() + 30
    while _volume_file(cloud, created["id"]).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _volume_file(cloud, created["id"]).exists()
    gone = cloud.openstack("volume", "show", created["id"], cloud="kilonova-demo", check=False)
    assert gone.returncode != 0


def test_volume_types_quota_and_limits(cloud):
    created = cloud.openstack("volume", "type", "create", "--property", "volume_backend_name=file", "fast",
                              fmt_json=True)
    try:
        assert created["name"] == "fast"
        types = {t["Name"] for t in cloud.openstack("volume", "type", "list", fmt_json=True)}
        assert {"__DEFAULT__", "fast"} <= types
        denied = cloud.openstack("volume", "type", "create", "mine", cloud="kilonova-demo", check=False)
        assert denied.returncode != 0 and "403" in denied.stderr
    finally:
        cloud.openstack("volume", "type", "delete", "fast")
    zones = cloud.openstack("availability", "zone", "list", "--volume", fmt_json=True)
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones] == [("nova", "available")]
    quota = {row["Resource"]: row for row in cloud.openstack("quota", "show", "--usage", "--volume", "demo",
                                                             fmt_json=True)}
    assert quota["volumes"]["Limit"] == 10 and quota["gigabytes"]["Limit"] == 1000
    assert quota["snapshots"]["Limit"] == 10 and quota["volumes"]["In Use"] == 0
    limits = {row["Name"]: row["Value"] for row in
              cloud.openstack("limits", "show", "--absolute", cloud="kilonova-demo", fmt_json=True)}
    assert limits["max_total_volumes"] == 10 and limits["max_total_volume_gigabytes"] == 1000
    assert limits["total_volumes_used"] == 0


def test_bad_input_and_quota_with_sdk(cloud):
    conn = cloud.sdk("kilonova-demo")
    admin = cloud.sdk()
    project_id = conn.current_project_id
    url = conn.block_storage.get_endpoint()
    assert url.rstrip("/").endswith(f"/v3/{project_id}")
    headers = {"X-Auth-Token": conn.auth_token}
    with httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=30) as http:
        for body, words in (({"volume": {"size": 0}}, "size"), ({"volume": {"size": "x"}}, "size"),
                            ({"volume": {"name": "nosize"}}, "size is required"),
                            ({"volume": {"size": 1, "imageRef": "abc"}}, "Invalid image identifier"),
                            ({"volume": {"size": 1, "backup_id": "abc"}}, "not supported yet"),
                            ({"volume": {"size": 1, "availability_zone": "elsewhere"}}, "elsewhere"),
                            ({"nothing": 1}, "volume")):
            answer = http.post("volumes", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert words in answer.json()["badRequest"]["message"]
            assert answer.json()["badRequest"]["code"] == 400
        unknown_type = http.post("volumes", json={"volume": {"size": 1, "volume_type": "nope"}})
        assert unknown_type.status_code == 404 and "itemNotFound" in unknown_type.json()
        too_new = http.get("volumes", headers={"OpenStack-API-Version": "volume 3.999"})
        assert too_new.status_code == 406
        ok = http.get("volumes", headers={"OpenStack-API-Version": "volume 3.0"})
        assert ok.headers["OpenStack-API-Version"] == "volume 3.0"
        big = http.post("volumes", json={"volume": {"size": 1001}})
        assert big.status_code == 413 and "gigabytes quota" in big.json()["overLimit"]["message"]
        volume = conn.block_storage.create_volume(size=1, name="sdk-volume")
        try:
            volume = conn.block_storage.wait_for_status(volume, "available", wait=30)
            shrink = http.post(f"volumes/{volume.id}/action", json={"os-extend": {"new_size": 1}})
            assert shrink.status_code == 400 and "greater than current size" in shrink.text
            other = admin.block_storage.get_endpoint()
            theirs = httpx.get(f"{other.rstrip('/')}/volumes/{volume.id}",
                               headers={"X-Auth-Token": admin.auth_token})
            assert theirs.status_code == 200   # admins see every project's volume
            page = http.get("volumes", params={"limit": 0})
            assert page.status_code == 200 and page.json()["volumes"] == []
            assert http.get("volumes", params={"marker": "missing"}).status_code == 404
            assert http.get("volumes", params={"sort": "bogus:asc"}).status_code == 400
        finally:
            conn.block_storage.delete_volume(volume)
    versions = httpx.get(url.split("/v3/")[0] + "/")
    assert versions.status_code == 300 and versions.json()["versions"][0]["min_version"] == "3.0"


def test_types_properties_listing_and_refusals_with_cli(cloud):
    cloud.openstack("volume", "type", "create", "--description", "quick", "cli-fast")
    made = []
    try:
        cloud.openstack("volume", "type", "set", "--property", "tier=1", "cli-fast")
        shown = cloud.openstack("volume", "type", "show", "cli-fast", fmt_json=True)
        assert shown["properties"] == {"tier": "1"} and shown["description"] == "quick"
        cloud.openstack("volume", "type", "unset", "--property", "tier", "cli-fast")
        assert cloud.openstack("volume", "type", "show", "cli-fast", fmt_json=True)["properties"] == {}
        for name in ("cli-a", "cli-b"):
            made.append(cloud.openstack("volume", "create", "--size", "1", "--type", "cli-fast",
                                        "--availability-zone", "nova", name, fmt_json=True)["id"])
        long = {v["Name"]: v for v in cloud.openstack("volume", "list", "--long", fmt_json=True)}
        assert long["cli-a"]["Type"] == "cli-fast" and long["cli-b"]["Size"] == 1
        in_use = cloud.openstack("volume", "type", "delete", "cli-fast", check=False)
        assert in_use.returncode != 0 and "in use" in in_use.stderr
        cloud.openstack("quota", "set", "--volumes", "0", "demo")
        try:
            over = cloud.openstack("volume", "create", "--size", "1", "x", cloud="kilonova-demo", check=False,
                                   fmt_json=True)
            if isinstance(over, dict):
                made.append(over["id"])
            assert not isinstance(over, dict) and "413" in over.stderr and "'volumes'" in over.stderr
        finally:
            cloud.openstack("quota", "set", "--volumes", "10", "demo")
    finally:
        for volume_id in made:
            deadline = time.monotonic() + 30
            while cloud.openstack("volume", "show", volume_id, fmt_json=True)["status"] == "creating" \
                    and time.monotonic() < deadline:
                time.sleep(0.3)
            cloud.openstack("volume", "delete", volume_id)
        deadline = time.monotonic() + 30
        while cloud.openstack("volume", "type", "delete", "cli-fast", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the type stayed in use"
            time.sleep(0.3)


def _wait(cloud, kind: list[str], ref: str, status: str, cloud_name: str = "kilonova-demo") -> dict:
    deadline = time.monotonic() + 30
    while True:
        shown = cloud.openstack(*kind, "show", ref, cloud=cloud_name, fmt_json=True)
        if shown["status"] == status or time.monotonic() > deadline:
            assert shown["status"] == status, shown
            return shown
        time.sleep(0.3)


def test_volume_snapshots_with_cli(cloud):
    volume = cloud.openstack("volume", "create", "--size", "1", "snap-source", cloud="kilonova-demo",
                             fmt_json=True)
    try:
        _wait(cloud, ["volume"], volume["id"], "available")
        made = cloud.openstack("volume", "snapshot", "create", "--volume", "snap-source", "--description", "d",
                               "--property", "k=v", "snap1", cloud="kilonova-demo", fmt_json=True)
        try:
            shown = _wait(cloud, ["volume", "snapshot"], made["id"], "available")
            assert shown["volume_id"] == volume["id"] and shown["size"] == 1 and shown["description"] == "d"
            assert (cloud.state_dir / "volumes" / f"snapshot-{made['id']}").exists()
            names = [s["Name"] for s in cloud.openstack("volume", "snapshot", "list", cloud="kilonova-demo",
                                                        fmt_json=True)]
            assert names == ["snap1"]
            cloud.openstack("volume", "snapshot", "set", "--name", "snap2", "--property", "x=y", "snap1",
                            cloud="kilonova-demo")
            cloud.openstack("volume", "snapshot", "unset", "--property", "k", "snap2", cloud="kilonova-demo")
            props = cloud.openstack("volume", "snapshot", "show", "snap2", cloud="kilonova-demo", fmt_json=True)
            assert props["properties"] == {"x": "y"}
            refused = cloud.openstack("volume", "delete", "snap-source", cloud="kilonova-demo", check=False)
            assert refused.returncode != 0 and "snapshots" in refused.stderr
            quota = {row["Resource"]: row for row in cloud.openstack("quota", "show", "--usage", "--volume",
                                                                     "demo", fmt_json=True)}
            assert quota["snapshots"]["In Use"] == 1
            from_snapshot = cloud.openstack("volume", "create", "--snapshot", "snap2", "--size", "2", "from-snap",
                                            cloud="kilonova-demo", fmt_json=True)
            clone = cloud.openstack("volume", "create", "--source", "snap-source", "clone",
                                    cloud="kilonova-demo", fmt_json=True)
            for made_volume, size in ((from_snapshot, 2), (clone, 1)):
                shown = _wait(cloud, ["volume"], made_volume["id"], "available")
                assert shown["size"] == size
                assert os.path.getsize(_volume_file(cloud, made_volume["id"])) == size * 1024 ** 3
                cloud.openstack("volume", "delete", made_volume["id"], cloud="kilonova-demo")
        finally:
            cloud.openstack("volume", "snapshot", "delete", made["id"], cloud="kilonova-demo")
        deadline = time.monotonic() + 30
        while (cloud.state_dir / "volumes" / f"snapshot-{made['id']}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        deadline = time.monotonic() + 30
        while cloud.openstack("volume", "delete", volume["id"], cloud="kilonova-demo", check=False).returncode:
            assert time.monotonic() < deadline, "the volume could not be deleted"
            time.sleep(0.3)
