"""Volume on a real guest (root, libvirt): create a 1 GiB file-backed volume and attach it to a running guest.

Boots the tiny test guest (tests/libvirt/hostsetup.py) once, then for each round creates a 1 GiB volume
(POST -> available), attaches it (POST os-volume_attachments -> in-use: the hot-plug into the running
guest), waits for the guest to notice the disk (its console note), and detaches it; prints the medians.

    sudo .venv/bin/python benchmarks/real_volume.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cloud import Cloud  # noqa: E402
from tests.libvirt import hostsetup  # noqa: E402
from tests.libvirt.test_real_guest import remove_leftovers, upload_guest, wait_console  # noqa: E402


def _wait(check, timeout: float = 120.0, interval: float = 0.02) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("timed out")
        time.sleep(interval)
    return time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    guest = hostsetup.prepare()
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-bench-"))
    volumes_dir = workdir / "volumes"
    volumes_dir.mkdir()
    os.chmod(volumes_dir, 0o711)
    cloud = Cloud(workdir, hosts=1, config={
        "DEFAULT": {"host": "kilonova-volume-bench"},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
        "volume": {"volumes_dir": str(volumes_dir)}})
    os.chmod(workdir, 0o755)
    cloud.start(timeout=120)
    try:
        image = upload_guest(cloud, guest, "volume-bench")
        cloud.openstack("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "bench.volume")
        server = cloud.openstack("server", "create", "--flavor", "bench.volume", "--image", image["id"],
                                 "--network", "private", "--wait", "vol-bench", fmt_json=True, timeout=240)
        wait_console(cloud, server["id"], f"{hostsetup.MARKER} ready", timeout=240)
        conn = cloud.sdk()
        base = f"/v3/{conn.current_project_id}"
        created, attached, noticed = [], [], []
        with cloud.http("block-storage") as volumes, cloud.http("compute") as compute:
            def status(volume_id: str) -> str:
                return volumes.get(f"{base}/volumes/{volume_id}").json()["volume"]["status"]

            def console() -> str:
                return compute.post(f"/servers/{server['id']}/action",
                                    json={"os-getConsoleOutput": {}}).json()["output"]
            for _ in range(args.rounds):
                start = time.monotonic()
                volume_id = volumes.post(f"{base}/volumes", json={"volume": {"size": 1}}).json()["volume"]["id"]
                available = _wait(lambda: status(volume_id) == "available")
                seen = console().count("volume vdb written")
                reply = compute.post(f"/servers/{server['id']}/os-volume_attachments",
                                     json={"volumeAttachment": {"volumeId": volume_id}})
                assert reply.status_code == 200, reply.text
                in_use = _wait(lambda: status(volume_id) == "in-use")
                try:
                    noted = _wait(lambda: console().count("volume vdb written") > seen, interval=0.1, timeout=30)
                except TimeoutError:
                    print("\n".join(line for line in console().splitlines() if "alive" not in line)[-3000:])
                    raise
                created.append(available - start)
                attached.append(in_use - available)
                noticed.append(noted - available)
                compute.delete(f"/servers/{server['id']}/os-volume_attachments/{volume_id}")
                _wait(lambda: status(volume_id) == "available")
                volumes.delete(f"{base}/volumes/{volume_id}")
                time.sleep(3)  # the guest looks for new disks every 2 s: it must see this one gone first
        print(f"{args.rounds} rounds, 1 GiB file-backed volume, one running guest (median, min-max):")
        for name, values in (("create (POST -> available)", created), ("attach (POST -> in-use)", attached),
                             ("attach -> the guest's note on it", noticed)):
            print(f"  {name:<34} {statistics.median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})")
        print(f"  create + attach                    {statistics.median([c + a for c, a in zip(created, attached)]):6.2f} s")
        cloud.openstack("server", "delete", "--wait", server["id"], timeout=120)
    finally:
        cloud.stop()
        remove_leftovers(cloud.state_dir)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
