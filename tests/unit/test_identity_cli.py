"""The real ``openstack`` CLI against the identity app served by uvicorn on a free port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from tests.unit.test_identity import PASSWORDS, make_conf, make_service

OPENSTACK = Path(sys.executable).parent / "openstack"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served_identity(tmp_path):
    port = free_port()
    conf = make_conf(tmp_path)
    conf.set("ports", "identity", str(port))
    service = make_service(conf)
    server = uvicorn.Server(uvicorn.Config(service.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}/v3"
    server.should_exit = True
    thread.join(5)
    service.db.close()


@pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")
def test_openstack_cli(served_identity):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": served_identity, "OS_IDENTITY_API_VERSION": "3", "OS_USERNAME": "admin",
                "OS_PASSWORD": PASSWORDS["admin"], "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne"})
    # One CLI process reading the commands from stdin (cliff's interactive mode): one start-up cost.
    # Its exit status is 1 at end of input whatever happened, so success is judged by the output.
    commands = ["token issue", "project list", "user list", "catalog list"]
    script = "".join(f"{command} -f json\n" for command in commands)
    proc = subprocess.run([str(OPENSTACK)], input=script, env=env, capture_output=True, text=True, timeout=60)
    decoder, output, documents = json.JSONDecoder(), proc.stdout, []
    position = 0
    while output[position:].strip():
        position += len(output[position:]) - len(output[position:].lstrip())
        document, position = decoder.raw_decode(output, position)
        documents.append(document)
    assert len(documents) == len(commands), (proc.stdout, proc.stderr)
    results = dict(zip(["token", "projects", "users", "catalog"], documents))
    assert results["token"]["user_id"] and results["token"]["project_id"] and results["token"]["id"]
    assert {p["Name"] for p in results["projects"]} == {"admin", "demo", "service"}
    assert {u["Name"] for u in results["users"]} == {"admin", "demo", "kilonova"}
    catalog = {entry["Type"]: entry for entry in results["catalog"]}
    assert {t: e["Name"] for t, e in catalog.items()} == {
        "identity": "keystone", "compute": "nova", "placement": "placement", "image": "glance", "network": "neutron",
        "block-storage": "cinder", "volumev3": "cinderv3"}
    identity_urls = {e["url"] for e in catalog["identity"]["Endpoints"]}
    assert identity_urls == {served_identity}
