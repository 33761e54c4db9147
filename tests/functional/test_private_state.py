"""No other local user can read the state directory: password hashes, keys, key pairs, user data, images,
volumes.

A real ``kilonova up`` is given some of everything (an uploaded image, a key pair, a server with user
data, a volume and its snapshot), then every file and directory under its state directory must be
owner-only: while it runs (SQLite's -wal and -shm files exist then) and after a restart on a state
directory an older release left readable.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import httpx
import pytest

from tests.cloud import new_cloud, wait_for


@pytest.fixture(scope="module")
def private_cloud():
    cloud = new_cloud(hosts=1)
    cloud.start()
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def readable_by_others(state_dir: Path) -> list[str]:
    """Every path under ``state_dir`` (itself included) whose mode is not 0700 (directories) / 0600 (files)."""
    found = []
    for path in [state_dir, *state_dir.rglob("*")]:
        mode = path.lstat().st_mode
        wanted = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) != wanted:
            found.append(f"{path.relative_to(state_dir.parent)} {stat.S_IMODE(mode):o}")
    return found


def test_everything_in_the_state_directory_is_owner_only(private_cloud, tmp_path):
    image_file = tmp_path / "private.img"
    image_file.write_bytes(b"private image bytes " * 100)
    private_cloud.openstack("image", "create", "--private", "--disk-format", "raw", "--container-format", "bare",
                            "--file", str(image_file), "private-image")
    private_cloud.openstack("keypair", "create", "--private-key", str(tmp_path / "key"), "private-key")
    user_data = tmp_path / "user-data"
    user_data.write_text("#!/bin/sh\necho secret\n")
    private_cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                            "--network", "private", "--key-name", "private-key", "--user-data", str(user_data),
                            "--wait", "private-server")
    private_cloud.openstack("console", "log", "show", "private-server")
    make_volume_and_snapshot(private_cloud)

    state = private_cloud.state_dir
    names = {path.name for path in state.rglob("*")}
    assert {"keystone.sqlite", "keystone.sqlite-wal", "cell1.sqlite", "cinder.sqlite", "secrets.json", "openrc",
            "fernet-keys", "images", "volumes"} <= names
    assert list((state / "images").iterdir()), "the uploaded image is in the store"
    assert {path.name.split("-")[0] for path in (state / "volumes").iterdir()} == {"volume", "snapshot"}
    assert readable_by_others(state) == []


def make_volume_and_snapshot(cloud) -> None:
    """A volume (a user's disk) and its snapshot, through the block-storage API; back once available."""
    token = cloud.token()
    project_id = httpx.get(cloud.urls["identity"] + "/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token}).json()["token"]["project"]["id"]
    with httpx.Client(base_url=f"{cloud.urls['block-storage']}/v3/{project_id}", timeout=30,
                      headers={"X-Auth-Token": token}) as volumes:
        volume = volumes.post("/volumes", json={"volume": {"size": 1, "name": "private-volume"}}).json()["volume"]
        wait_for(lambda: volumes.get(f"/volumes/{volume['id']}").json()["volume"]["status"] == "available",
                 "the volume to be available")
        snapshot = volumes.post("/snapshots", json={"snapshot": {"volume_id": volume["id"]}}).json()["snapshot"]
        wait_for(lambda: volumes.get(f"/snapshots/{snapshot['id']}").json()["snapshot"]["status"] == "available",
                 "the snapshot to be available")


def test_a_state_directory_left_readable_is_made_private_at_start(private_cloud):
    private_cloud.stop()
    state = private_cloud.state_dir
    for path in [state, *state.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)   # what releases before the fix wrote
    assert readable_by_others(state)

    private_cloud.start()
    assert readable_by_others(state) == []
    private_cloud.openstack("server", "show", "private-server")
