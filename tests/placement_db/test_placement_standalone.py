"""`kilonova serve placement` alone, with noauth2 on SQLite, answering over real HTTP at the root of its URL."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

H = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement 1.39"}


def _base_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        try:
            for offset in range(5):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
    raise RuntimeError("no five consecutive free ports")


def test_serve_placement_alone_with_noauth2(tmp_path):
    (tmp_path / "kilonova.conf").write_text("[placement]\nauth_strategy = noauth2\n")
    base = _base_port()
    kilonova = Path(sys.executable).parent / "kilonova"
    process = subprocess.Popen([str(kilonova), "--config", str(tmp_path / "kilonova.conf"), "--state-dir",
                                str(tmp_path), "serve", "placement", "--base-port", str(base)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{base + 2}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                root = httpx.get(url + "/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "placement did not come up"
                time.sleep(0.2)
        assert root.json()["versions"][0]["max_version"] == "1.39"
        with httpx.Client(base_url=url, headers=H, timeout=30) as http:
            assert http.get("/resource_providers", headers={"X-Auth-Token": ""}).status_code == 403
            assert http.get("/resource_providers", headers={"X-Auth-Token": "bob"}).status_code == 403
            rp = http.post("/resource_providers", json={"name": "alone"}).json()
            r = http.put(f"/resource_providers/{rp['uuid']}/inventories", json={
                "resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}})
            assert r.status_code == 200
            body = http.get("/allocation_candidates?resources=VCPU:2").json()
            assert list(body["allocation_requests"][0]["allocations"]) == [rp["uuid"]]
        unauthenticated = httpx.get(url + "/resource_providers")
        assert unauthenticated.status_code == 401
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
