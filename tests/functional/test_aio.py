"""`kilonova up` itself: start-up, client configuration, restart on the same state, failure handling."""
from __future__ import annotations

import os
import shutil
import stat
import time

import yaml

from tests.cloud import new_cloud
from tests.functional.test_servers_cli import usage


def test_up_writes_client_config_restarts_with_its_state_and_stops_cleanly():
    cloud = new_cloud(hosts=2)
    try:
        cloud.start()  # ready within its timeout; how fast is benchmarks/boot.py's figure, not an assertion here
        clouds = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"]
        assert clouds["kilonova"]["auth"]["username"] == "admin"
        assert clouds["kilonova-demo"]["auth"]["project_name"] == "demo"
        openrc = (cloud.state_dir / "openrc").read_text()
        assert "OS_AUTH_URL=" + cloud.urls["identity"] in openrc
        assert stat.S_IMODE(os.stat(cloud.state_dir / "openrc").st_mode) == 0o600
        output = "".join(cloud.output)
        for url in cloud.urls.values():
            assert url in output
        created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                  "--network", "private", "--wait", "survivor", fmt_json=True)
        cloud.openstack("flavor", "create", "--ram", "256", "--vcpus", "1", "--disk", "1", "kept")
        assert cloud.stop() == 0
        assert "Kilonova stopped." in "".join(cloud.output)

        cloud.start()
        shown = cloud.openstack("server", "show", created["id"], fmt_json=True)
        assert shown["status"] == "ACTIVE"
        assert shown["addresses"] == created["addresses"]
        assert "kept" in [f["Name"] for f in cloud.openstack("flavor", "list", fmt_json=True)]
        assert len(cloud.openstack("resource", "provider", "list", fmt_json=True)) == 2
        assert usage(cloud)["MEMORY_MB"] == 512
        cloud.openstack("server", "delete", "--wait", created["id"])
        assert usage(cloud).get("MEMORY_MB", 0) == 0
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_failed_build_is_rescheduled_then_errors_when_no_host_is_left():
    cloud = new_cloud(hosts=2, config={"fake_driver": {"fail_spawn_hosts": "compute1"}})
    try:
        cloud.start()
        # compute1 always fails: every server must end on compute2 (directly or after a reschedule).
        for i in range(3):
            created = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                      "--network", "private", "--wait", f"retry-{i}", fmt_json=True)
            assert created["OS-EXT-SRV-ATTR:host"] == "compute2"
        assert usage(cloud)["MEMORY_MB"] == 3 * 512
        ports = cloud.openstack("port", "list", fmt_json=True)
        assert len([p for p in ports if p.get("Status") != "N/A"]) >= 3

        cloud.openstack("compute", "service", "set", "--disable", "compute2", "nova-compute")
        result = cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                 "--network", "private", "--wait", "doomed", check=False)
        assert result.returncode != 0
        shown = cloud.wait_status("doomed", "ERROR")
        assert "compute1" in shown["fault"].get("details", "") or "compute1" in shown["fault"]["message"]
        assert usage(cloud)["MEMORY_MB"] == 3 * 512, "the failed build must not keep its claim"
        assert cloud.openstack("port", "list", "--device-id", shown["id"], fmt_json=True) == []
        cloud.openstack("server", "delete", "--wait", "doomed")
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)


def test_sigterm_during_boots_leaves_nothing_stuck_after_restart():
    cloud = new_cloud(hosts=2, config={"fake_driver": {"spawn_delay": "2"}})
    try:
        cloud.start()
        cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                        "--network", "private", "interrupted")
        time.sleep(0.5)
        cloud.stop()
        cloud.start()
        deadline = time.monotonic() + 30
        while True:
            shown = cloud.openstack("server", "show", "interrupted", fmt_json=True)
            if shown["status"] in ("ACTIVE", "ERROR"):
                break
            assert time.monotonic() < deadline, f"server stuck in {shown['status']}"
            time.sleep(0.5)
        cloud.openstack("server", "delete", "--wait", "interrupted")
        assert usage(cloud).get("MEMORY_MB", 0) == 0
    finally:
        cloud.stop()
        shutil.rmtree(cloud.workdir, ignore_errors=True)
