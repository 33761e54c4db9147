"""What an operator reads: request ids on every answer and in every log line of a boot, /healthcheck, /metrics."""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cloud import free_port_block, run_manage, wait_for

REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# A call of each API that any token may make.
EACH_API = {"identity": "/auth/tokens", "compute": "/servers", "placement": "/resource_providers",
            "image": "/v2/images", "network": "/v2.0/networks", "block-storage": "/"}
APP_NAME = {"block-storage": "volume"}   # how access lines name the block-storage API


def _root(cloud, service: str) -> str:
    """The API's root on its port (where /healthcheck and /metrics are)."""
    url = httpx.URL(cloud.urls[service])
    return f"{url.scheme}://{url.host}:{url.port}"


@pytest.fixture(scope="module")
def token(cloud) -> str:
    return cloud.token()


@pytest.mark.parametrize("service", sorted(EACH_API))
def test_every_api_answers_a_request_id_and_keeps_a_callers_as_global(cloud, token, service):
    given = f"req-{uuid.uuid4()}"
    offset = cloud.log_offset()
    headers = {"X-Auth-Token": token, "X-Subject-Token": token, "X-OpenStack-Request-ID": given}
    response = httpx.get(cloud.urls[service] + EACH_API[service], headers=headers, timeout=30)
    assert response.status_code < 500
    local = response.headers["x-openstack-request-id"]
    assert REQUEST_ID.match(local) and local != given
    if service == "compute":
        assert response.headers["x-compute-request-id"] == local
    # The access line of the request names both ids: the caller's as the global one, then the local one.
    line = wait_for(lambda: next((l for l in cloud.log_lines(since=offset)
                                  if local in l and f"] {APP_NAME.get(service, service)} " in l), None),
                    f"the access line of {local}")
    assert f"[{given} {local} " in line
    assert re.search(r'"GET [^"]+" status: \d{3} len: \d+ time: \d+\.\d+', line), line


def test_a_malformed_callers_request_id_is_ignored(cloud, token):
    offset = cloud.log_offset()
    for bad in ("req-not-a-uuid", "abc", "REQ-" + str(uuid.uuid4()), "req-" + str(uuid.uuid4()) + "x"):
        response = httpx.get(cloud.urls["compute"] + "/flavors", timeout=30,
                             headers={"X-Auth-Token": token, "X-OpenStack-Request-ID": bad})
        assert response.status_code == 200
        local = response.headers["x-openstack-request-id"]
        assert REQUEST_ID.match(local)
        # (the identity service's line of the token check names it too, as its global id)
        line = wait_for(lambda: next((l for l in cloud.log_lines(since=offset)
                                      if local in l and "] compute " in l), None), f"the access line of {local}")
        assert f"[- {local} " in line and bad not in line


def test_one_request_id_finds_a_boot_in_every_service_that_worked_on_it(cloud, token):
    given = f"req-{uuid.uuid4()}"
    offset = cloud.log_offset()
    headers = {"X-Auth-Token": token}
    image = httpx.get(cloud.urls["image"] + "/v2/images?name=kilonova-tiny", headers=headers).json()["images"][0]
    network = httpx.get(cloud.urls["network"] + "/v2.0/networks?name=private", headers=headers).json()["networks"][0]
    before = _samples(httpx.get(_root(cloud, "placement") + "/metrics").text)
    created = httpx.post(cloud.urls["compute"] + "/servers", headers={**headers, "X-OpenStack-Request-ID": given},
                         json={"server": {"name": "traced", "flavorRef": "1", "imageRef": image["id"],
                                          "networks": [{"uuid": network["id"]}]}}, timeout=60)
    assert created.status_code == 202, created.text
    server = created.json()["server"]["id"]
    try:
        wait_for(lambda: httpx.get(f"{cloud.urls['compute']}/servers/{server}", headers=headers)
                 .json()["server"]["status"] == "ACTIVE", "the server to be ACTIVE")
        # The API's own answer, the calls the API, the scheduler and the compute agent made to the others, and
        # the RPC messages of the boot handled by the conductor, the scheduler and the chosen host's agent
        # (the log file is written in blocks: waited for).
        expected = {**{service: f"] {service} " for service in ("compute", "image", "network", "placement")},
                    **{name: name for name in ("conductor schedule_and_build_instances",
                                               "scheduler select_destinations", "build_and_run_instance")}}

        def missing():
            lines = [line for line in cloud.log_lines(since=offset) if given in line]
            return [what for what, text in expected.items() if not any(text in line for line in lines)], lines
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not missing()[0], "every service's lines of the boot", timeout=10)
        gaps, lines = missing()
        assert gaps == [], lines
        # The boot's messages run under the project that asked for it (messages the network service sends
        # on the compute agent's calls, made as the service user, carry the service's project).
        project = httpx.get(cloud.urls["identity"] + "/auth/tokens",
                            headers={**headers, "X-Subject-Token": token}).json()["token"]["project"]["id"]
        boot = [line for line in lines if "kilonova.rpc" in line and any(
            name in line for name in ("schedule_and_build_instances", "select_destinations", "build_and_run"))]
        assert boot and all(f" {project}] " in line for line in boot), boot

        # The boot moved the counters: one create that succeeded, a scheduling decision, a candidate query,
        # the conductor's cast; Placement's usage counts the server's VCPU; every host is up.
        after = _samples(httpx.get(_root(cloud, "placement") + "/metrics").text)

        def moved(name, **labels):
            return _value(after, name, **labels) - _value(before, name, **labels)
        assert moved("kilonova_server_actions_total", action="create", outcome="success") >= 1
        assert moved("kilonova_scheduler_decision_seconds_count", outcome="success") >= 1
        assert moved("kilonova_placement_allocation_candidates_seconds_count", outcome="success") >= 1
        assert moved("kilonova_rpc_messages_total", kind="cast", target="conductor",
                     method="schedule_and_build_instances") >= 1
        assert _value(after, "kilonova_placement_usage", resource_class="VCPU") >= 1
        assert _value(after, "kilonova_placement_capacity", resource_class="VCPU") > 0
        assert _value(after, "kilonova_compute_hosts", state="up") == cloud.hosts
    finally:
        httpx.delete(f"{cloud.urls['compute']}/servers/{server}", headers=headers)


def _samples(text: str) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _value(samples: dict, name: str, **labels) -> float:
    return sum(value for (sample, keys), value in samples.items()
               if sample == name and all((k, v) in keys for k, v in labels.items()))


def test_metrics_count_requests_per_route_template(cloud, token):
    root = _root(cloud, "compute")
    before = _samples(httpx.get(root + "/metrics").text)
    for _ in range(3):
        assert httpx.get(cloud.urls["compute"] + "/flavors/1", headers={"X-Auth-Token": token}).status_code == 200
    response = httpx.get(root + "/metrics")   # no token needed
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    route = dict(service="compute", method="GET", route="/v2.1/flavors/{flavor_id}")
    moved = _value(after, "kilonova_http_requests_total", status="200", **route) - \
        _value(before, "kilonova_http_requests_total", status="200", **route)
    assert moved == 3
    assert _value(after, "kilonova_http_request_duration_seconds_count", **route) >= 3
    # Each RPC target the process serves has its queue's depth (nothing waits in an idle cloud).
    assert _value(after, "kilonova_rpc_queue_depth", target="conductor") == 0
    assert any(sample == "kilonova_rpc_queue_depth" and ("target", "compute") in keys for sample, keys in after)
    # No series per raw path: the flavor id is not a label value anywhere.
    assert not any("/flavors/1" in dict(keys).get("route", "") for _, keys in after)


def test_every_api_has_a_healthcheck_that_needs_no_token(cloud):
    for service in EACH_API:
        response = httpx.get(_root(cloud, service) + "/healthcheck")
        assert (response.status_code, response.text.strip()) == (200, "OK"), service


def test_healthcheck_answers_503_naming_the_database_that_is_gone(cloud):
    database = cloud.state_dir / "glance.sqlite"
    aside = database.with_name("glance.sqlite.aside")
    database.rename(aside)
    try:
        response = httpx.get(_root(cloud, "image") + "/healthcheck")
        assert response.status_code == 503
        assert response.text.startswith("database glance: unreachable"), response.text
        assert httpx.get(_root(cloud, "compute") + "/healthcheck").status_code == 200  # the others are fine
    finally:
        aside.rename(database)
    assert httpx.get(_root(cloud, "image") + "/healthcheck").status_code == 200


def test_a_process_without_an_api_answers_on_its_metrics_port_and_logs_to_its_own_file(tmp_path):
    """`kilonova serve scheduler` with [DEFAULT] metrics_port: /metrics and /healthcheck of the process,
    its lines in log_dir/kilonova-scheduler.log."""
    port = free_port_block(1)
    config = tmp_path / "kilonova.conf"
    config.write_text(f"[DEFAULT]\nmetrics_port = {port}\nlog_dir = {tmp_path / 'logs'}\nlog_format = json\n")
    options = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    run_manage(options, "api_db", "sync")
    process = subprocess.Popen([sys.executable, "-m", "kilonova.cli", *options, "serve", "scheduler"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Kilonova is serving scheduler" in process.stdout.readline()
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthcheck").status_code == 200, "the health check")
        assert httpx.get(f"http://127.0.0.1:{port}/healthcheck").text == "OK\n"
        families = {family.name for family in text_string_to_metric_families(
            httpx.get(f"http://127.0.0.1:{port}/metrics").text)}
        assert {"kilonova_scheduler_decision_seconds", "kilonova_rpc_messages"} <= families
        # Its heartbeat finds no conductor: a warning, as one JSON object, in the scheduler's own file.
        log = tmp_path / "logs" / "kilonova-scheduler.log"
        entry = wait_for(lambda: log.exists() and log.read_text().splitlines(), "a log line")[0]
        assert json.loads(entry)["level"] in ("INFO", "WARNING") and "request_id" in json.loads(entry)
    finally:
        process.terminate()
        process.wait(20)


def test_state_changes_decisions_and_faults_are_logged_with_the_request_id(cloud, token):
    """A boot's every state change and its scheduling decision at INFO; a boot with no host: the reason and the
    fault. Each line carries the boot's request id, so one grep tells an operator what happened."""
    headers = {"X-Auth-Token": token}
    image = httpx.get(cloud.urls["image"] + "/v2/images?name=kilonova-tiny", headers=headers).json()["images"][0]
    network = httpx.get(cloud.urls["network"] + "/v2.0/networks?name=private", headers=headers).json()["networks"][0]
    huge = httpx.post(cloud.urls["compute"] + "/flavors", headers=headers, json={"flavor": {
        "name": "logs-no-host", "ram": 64, "vcpus": 1, "disk": 1}}).json()["flavor"]
    httpx.post(f"{cloud.urls['compute']}/flavors/{huge['id']}/os-extra_specs", headers=headers,
               json={"extra_specs": {"trait:CUSTOM_ON_NO_HOST": "required"}}).raise_for_status()
    offset = cloud.log_offset()
    servers = {}
    try:
        for name, flavor in (("logged", "1"), ("logged-no-host", huge["id"])):
            given = f"req-{uuid.uuid4()}"
            created = httpx.post(cloud.urls["compute"] + "/servers", timeout=60,
                                 headers={**headers, "X-OpenStack-Request-ID": given},
                                 json={"server": {"name": name, "flavorRef": flavor, "imageRef": image["id"],
                                                  "networks": [{"uuid": network["id"]}]}})
            assert created.status_code == 202, created.text
            servers[name] = (created.json()["server"]["id"], given)
        for name, status in (("logged", "ACTIVE"), ("logged-no-host", "ERROR")):
            uuid_ = servers[name][0]
            wait_for(lambda: httpx.get(f"{cloud.urls['compute']}/servers/{uuid_}", headers=headers)
                     .json()["server"]["status"] == status, f"{name} to be {status}")

        def lines_of(name: str) -> list[str]:
            server, given = servers[name]
            return [line for line in cloud.log_lines(since=offset) if given in line and server in line]

        expected = {"logged": ["created in its cell", "vm_state building -> active", "scheduled "],
                    "logged-no-host": ["no host for", "created in its cell: vm_state error", "fault (500): No valid host"]}

        def missing():
            return {name: [text for text in texts if not any(text in line for line in lines_of(name))]
                    for name, texts in expected.items()}
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not any(missing().values()), "the state and decision lines", timeout=10)
        assert not any(missing().values()), (missing(), lines_of("logged"), lines_of("logged-no-host"))
        assert all(" INFO " in line or " WARNING " in line for line in lines_of("logged-no-host"))
    finally:
        for server, _ in servers.values():
            httpx.delete(f"{cloud.urls['compute']}/servers/{server}", headers=headers)
        httpx.delete(f"{cloud.urls['compute']}/flavors/{huge['id']}", headers=headers)


# A route of each API that its OpenAPI document must describe (method, path template).
KNOWN_ROUTE = {"identity": ("post", "/v3/auth/tokens"), "compute": ("post", "/v2.1/servers"),
               "placement": ("get", "/resource_providers"), "image": ("post", "/v2/images"),
               "network": ("post", "/v2.0/networks"), "block-storage": ("post", "/v3/{project_id}/volumes")}


@pytest.mark.parametrize("service", sorted(EACH_API))
def test_every_api_describes_its_routes_in_openapi(cloud, service):
    from openapi_spec_validator import validate

    response = httpx.get(_root(cloud, service) + "/openapi.json", timeout=30)   # no token needed
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    validate(document)  # a valid OpenAPI 3.1 document
    method, path = KNOWN_ROUTE[service]
    assert method in document["paths"][path], sorted(document["paths"])[:20]
    operations = [op for item in document["paths"].values() for name, op in item.items() if name != "parameters"]
    assert len(operations) >= 10 and all(op["summary"] for op in operations)
    if service == "compute":
        # The body schemas the handler validates with, as it validates: flavor create needs a flavor name.
        post = document["paths"]["/v2.1/flavors"]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert any("flavor" in s["required"] and "name" in s["properties"]["flavor"]["required"]
                   for s in schema.get("oneOf", [schema]))
        assert any(p["name"] == "OpenStack-API-Version" for p in post["parameters"])
