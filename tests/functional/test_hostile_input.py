"""Hostile input from outside (issue 12): every class that once gave a 500, a dropped connection or a
silent acceptance, against a running cloud over real sockets. Each answer has upstream's status and
the API's own error body, and nothing the requests do leaves a traceback in the cloud's log."""
from __future__ import annotations

import socket
import time

import httpx
import pytest

PATHS = {"identity": "/auth/tokens", "compute": "/servers", "placement": "/resource_providers",
         "image": "/v2/images", "network": "/v2.0/networks", "block-storage": "/v3/{project_id}/volumes"}
NESTED = "[" * 1000 + "]" * 1000   # 2 KB of nested arrays


def error_text(service: str, response: httpx.Response) -> str:
    """The message of an error body in the service's own style (and proof the body has that style)."""
    if service in ("compute", "block-storage"):   # Cinder words its faults as Nova does
        (fault,) = response.json().values()
        assert fault["code"] == response.status_code
        return fault["message"]
    if service == "identity":
        return response.json()["error"]["message"]
    if service == "placement":
        return response.json()["errors"][0]["detail"]
    if service == "network":
        return response.json()["NeutronError"]["message"]
    return response.json()["message"]   # Glance's JSON error (asked for with Accept: application/json)


@pytest.fixture(scope="module")
def log_mark(cloud):
    """Where the cloud's log stood before this module's requests."""
    return len(cloud.output)


@pytest.fixture(autouse=True)
def no_tracebacks(cloud, log_mark):
    yield
    time.sleep(0.2)   # the log is read from the cloud's stdout by a thread
    written = "".join(cloud.output[log_mark:])
    assert "Traceback" not in written, written[-3000:]


@pytest.fixture(scope="module")
def admin(cloud):
    return {"X-Auth-Token": cloud.token(), "Accept": "application/json"}


@pytest.fixture(scope="module")
def url(cloud, admin):
    """A URL of each service that takes a JSON body (a POST) and a listing (a GET)."""
    project_id = httpx.get(cloud.urls["identity"] + "/auth/tokens",
                           headers={**admin, "X-Subject-Token": admin["X-Auth-Token"]}).json()["token"]["project"]["id"]
    return lambda service: cloud.urls[service] + PATHS[service].format(project_id=project_id)


@pytest.fixture(scope="module")
def member(cloud):
    return {"X-Auth-Token": cloud.token("kilonova-demo"), "Accept": "application/json"}


@pytest.fixture(scope="module")
def boot(cloud, admin):
    with cloud.http("image") as image, cloud.http("network") as network:
        image_id = next(i["id"] for i in image.get("/v2/images").json()["images"] if i["name"] == "kilonova-tiny")
        net_id = next(n["id"] for n in network.get("/v2.0/networks").json()["networks"] if n["name"] == "private")

    def create(headers=admin, version="2.1", hints=None, **fields) -> httpx.Response:
        server = {"name": "hostile", "flavorRef": "1", "imageRef": image_id, "networks": [{"uuid": net_id}]}
        server.update(fields)
        body = {"server": server, **({"os:scheduler_hints": hints} if hints is not None else {})}
        return httpx.post(cloud.urls["compute"] + "/servers", json=body, timeout=60,
                          headers={**headers, "OpenStack-API-Version": f"compute {version}"})
    create.net_id = net_id
    return create


# ---------------------------------------------------------------- the shared HTTP layer, on all five APIs

@pytest.mark.parametrize("service", PATHS)
def test_deeply_nested_json_is_a_400_with_or_without_a_token(url, admin, service):
    for headers in ({}, admin):
        response = httpx.post(url(service), content=NESTED,
                              headers={**headers, "Content-Type": "application/json",
                                       "Accept": "application/json"})
        if not headers and service != "identity":
            assert response.status_code == 401   # authentication answers first, before the body is read
            continue
        assert response.status_code == 400, response.text
        assert "nested deeper" in error_text(service, response)


@pytest.mark.parametrize("service", PATHS)
def test_a_lone_surrogate_nul_or_huge_integer_in_a_body_is_a_400(url, admin, service):
    for raw in (b'{"x": {"name": "\\ud800"}}', b'{"x": {"name": "a\\u0000b"}}',
                b'{"x": {"size": 123456789012345678901234567890}}', b'{"x": NaN}', b'{"x": "\xe9"}'):
        response = httpx.post(url(service), content=raw,
                              headers={**admin, "Content-Type": "application/json"})
        assert response.status_code == 400, (raw, response.text)
        error_text(service, response)


@pytest.mark.parametrize("service", PATHS)
def test_a_non_ascii_token_is_a_401(cloud, url, service):
    port = int(cloud.urls[service].split(":")[2].split("/")[0])
    path = (cloud.urls[service] + "/projects" if service == "identity" else url(service)).split(str(port), 1)[1]
    answer = _raw_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                                "X-Auth-Token: ".encode() + "tök☃".encode() + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


@pytest.mark.parametrize("service", PATHS)
def test_a_200_kb_header_is_answered_431_not_dropped(cloud, service):
    response = httpx.get(cloud.urls[service] + "/", headers={"X-Padding": "a" * 200_000,
                                                             "Accept": "application/json"})
    assert response.status_code == 431
    assert "too large" in error_text(service, response)


@pytest.mark.parametrize("service", PATHS)
def test_a_40_kb_url_is_answered_414(url, admin, service):
    response = httpx.get(url(service) + "?name=" + "a" * 40_000, headers=admin)
    assert response.status_code == 414
    assert "too long" in error_text(service, response)


@pytest.mark.parametrize("service", PATHS)
def test_nul_in_a_query_string_is_a_400_and_in_a_path_a_404(url, admin, service):
    response = httpx.get(url(service) + "?name=a%00b", headers=admin)
    assert response.status_code == 400, response.text
    error_text(service, response)
    response = httpx.get(url(service) + "/a%00b", headers=admin)
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("service", PATHS)
def test_a_client_gone_before_its_body_is_complete_leaves_no_error(cloud, url, admin, service):
    """An interrupted upload: the body announced, a part sent, the connection closed. Nobody is left to
    answer, and the log holds no ERROR or traceback for it (once a 20-line traceback per request)."""
    port = int(cloud.urls[service].split(":")[2].split("/")[0])
    path = url(service).split(str(port), 1)[1]
    mark = len(cloud.output)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {admin['X-Auth-Token']}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\": ".encode())
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536) == b""   # closed without an answer: there is no one to answer
    time.sleep(0.3)   # the log is read from the cloud's stdout by a thread
    assert " ERROR " not in "".join(cloud.output[mark:])


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


# ---------------------------------------------------------------- server create, as upstream validates it

@pytest.mark.parametrize("name", [" leading", "trailing ", "new\nline", "tab\t", "nul\x00"])
def test_server_names_follow_upstreams_rule(boot, name):
    response = boot(name=name)
    assert response.status_code == 400, response.text
    assert "badRequest" in response.json()


@pytest.mark.parametrize("fields, hints, words", [
    ({"networks": [{}]}, None, "Bad network format: missing 'uuid'"),
    ({"availability_zone": ":::"}, None, "Unable to parse availability_zone"),
    ({"config_drive": "maybe"}, None, "config_drive"),
    ({}, {"group": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa"}, "Instance group 6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa could not be found."),
    ({}, {"group": "not-a-uuid"}, "group"),
    ({"block_device_mapping_v2": [{"boot_index": 0, "uuid": "6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa",
                                   "source_type": "volume", "destination_type": "volume"}]}, None,
     "Block Device Mapping is Invalid: failed to get volume 6b1e3a44-9d0a-4bde-8a55-0d3cb2e4f1aa."),
    ({"security_groups": [{"name": "nope"}]}, None, "Unable to find security_group with name or id 'nope'"),
    ({"personality": [{"path": "/etc/motd", "contents": "aGVsbG8="}]}, None,
     "Personality (file injection) is not supported yet"),
    ({"personality": [{"path": "/etc/motd", "contents": "not base64!"}]}, None,
     "Invalid input for field/attribute contents. Value: not base64!."),
])
def test_what_cannot_be_honoured_is_refused(boot, fields, hints, words):
    response = boot(hints=hints, **fields)
    assert response.status_code == 400, response.text
    assert words in response.json()["badRequest"]["message"]


@pytest.mark.parametrize("fields, words", [
    ({"imageRef": "a\nb"}, "could not be found"),   # once a 500: the id went unquoted into the image URL
    ({"imageRef": "../v2/images"}, "could not be found"),
    ({"imageRef": "x?y#z"}, "could not be found"),
    ({"networks": [{"uuid": "a\nb"}]}, "network uuid is not in proper format"),
    ({"max_count": ""}, "max_count"),                  # once a 500: int("")
    ({"min_count": "0"}, "min_count"),
])
def test_ids_and_counts_no_lookup_can_take_are_400(boot, fields, words):
    response = boot(**fields)
    assert response.status_code == 400, response.text
    assert words in response.json()["badRequest"]["message"]


def test_booleans_are_upstreams_boolean_parameter_type(cloud, boot, admin):
    """upstream's 22 spellings (``YES``, ``On``...), no others (``t``, ``y`` are refused), listed in its order."""
    refused = boot(config_drive="t")
    assert refused.status_code == 400, refused.text
    assert refused.json()["badRequest"]["message"] == (
        "Invalid input for field/attribute config_drive. Value: t. 't' is not one of [True, 'True', "
        "'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', 'FALSE', 'false', '0', "
        "'OFF', 'Off', 'off', 'NO', 'No', 'no']")
    assert "return_reservation_id" in boot(return_reservation_id="maybe").json()["badRequest"]["message"]
    created = boot(config_drive="YES", name="config-drive")
    assert created.status_code == 202, created.text
    server = f"{cloud.urls['compute']}/servers/{created.json()['server']['id']}"
    try:
        assert httpx.get(server, headers=admin).json()["server"]["config_drive"] == "True"
    finally:
        httpx.delete(server, headers=admin)
    reserved = boot(return_reservation_id="On", name="reserved")
    assert reserved.status_code == 202 and set(reserved.json()) == {"reservation_id"}, reserved.text
    servers = httpx.get(cloud.urls["compute"] + "/servers", headers=admin, params={
        "reservation_id": reserved.json()["reservation_id"]}).json()["servers"]  # listed at once, as upstream
    for listed in servers:
        httpx.delete(f"{cloud.urls['compute']}/servers/{listed['id']}", headers=admin)
    assert [listed["name"] for listed in servers] == ["reserved"]


def test_metadata_past_the_quota_is_a_403(boot):
    response = boot(metadata={f"k{i}": "v" for i in range(200)})
    assert response.status_code == 403, response.text
    assert response.json()["forbidden"]["message"] == "Maximum number of metadata items exceeds 128"


def test_a_forced_host_is_for_admins_and_honoured(cloud, boot, admin, member):
    refused = boot(headers=member, availability_zone="nova:compute2")
    assert refused.status_code == 403
    assert "forced_host" in refused.json()["forbidden"]["message"]
    assert boot(availability_zone="nova:no-such-host").status_code == 400
    created = boot(availability_zone="nova:compute2", name="forced")
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = httpx.get(f"{cloud.urls['compute']}/servers/{server_id}", headers=admin).json()["server"]
            if shown["status"] != "BUILD":
                break
            time.sleep(0.5)
        assert (shown["status"], shown["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "compute2")
    finally:
        httpx.delete(f"{cloud.urls['compute']}/servers/{server_id}", headers=admin)


def test_console_output_length_beyond_64_bits_is_a_400(cloud, admin, boot):
    created = boot(name="console")
    assert created.status_code == 202, created.text
    action = f"{cloud.urls['compute']}/servers/{created.json()['server']['id']}/action"
    try:
        for length in (2 ** 70, str(2 ** 70), "-2", "ten", -2):
            response = httpx.post(action, json={"os-getConsoleOutput": {"length": length}}, headers=admin)
            assert response.status_code == 400, (length, response.text)
            assert "badRequest" in response.json()
    finally:
        httpx.delete(action.rsplit("/", 1)[0], headers=admin)


# ---------------------------------------------------------------- other APIs' refusals

def test_all_tenants_must_be_a_boolean(cloud, admin):
    response = httpx.get(cloud.urls["compute"] + "/servers?all_tenants=xyz", headers=admin)
    assert response.status_code == 400
    assert "Unrecognized value 'xyz'" in response.json()["badRequest"]["message"]
    assert httpx.get(cloud.urls["compute"] + "/servers?all_tenants=1", headers=admin).status_code == 200


def test_another_projects_url_does_not_answer_with_the_callers_servers(cloud, admin, member):
    other = httpx.get(cloud.urls["identity"] + "/auth/tokens",
                      headers={**admin, "X-Subject-Token": member["X-Auth-Token"]}).json()["token"]["project"]["id"]
    response = httpx.get(cloud.urls["compute"].replace("/v2.1", f"/v2.1/{other}") + "/servers", headers=admin)
    assert response.status_code == 400
    assert "doesn't match Context's project_id" in response.json()["badRequest"]["message"]
    # The project's own id in the URL is upstream's legacy form, and answers.
    own = httpx.get(cloud.urls["compute"].replace("/v2.1", f"/v2.1/{other}") + "/servers", headers=member)
    assert own.status_code == 200 and "servers" in own.json()


def test_a_quota_for_a_project_identity_does_not_know_is_a_400(cloud, admin):
    quotas = cloud.urls["compute"] + "/os-quota-sets/not-a-project"
    for response in (httpx.put(quotas, json={"quota_set": {"instances": 5}}, headers=admin),
                     httpx.get(quotas, headers=admin), httpx.get(quotas + "/detail", headers=admin),
                     httpx.get(quotas + "/defaults", headers=admin)):
        assert response.status_code == 400, (response.request.url, response.text)
        assert response.json()["badRequest"]["message"] == "Project ID not-a-project is not a valid project."
    assert httpx.delete(quotas, headers=admin).status_code == 202   # upstream does not ask identity here


def test_tenant_access_to_a_public_flavor_is_a_409_from_2_7(cloud, admin, member):
    other = httpx.get(cloud.urls["identity"] + "/auth/tokens",
                      headers={**admin, "X-Subject-Token": member["X-Auth-Token"]}).json()["token"]["project"]["id"]
    response = httpx.post(cloud.urls["compute"] + "/flavors/1/action", json={"addTenantAccess": {"tenant": other}},
                          headers={**admin, "OpenStack-API-Version": "compute 2.7"})
    assert response.status_code == 409
    assert "public flavor" in response.json()["conflictingRequest"]["message"]


def test_image_time_filters_are_checked(cloud, admin):
    images = cloud.urls["image"] + "/v2/images"
    for query in ("created_at=gte:garbage", "updated_at=nope:2020-01-01T00:00:00Z", "created_at=garbage"):
        response = httpx.get(f"{images}?{query}", headers=admin)
        assert response.status_code == 400, (query, response.text)
    def names(query: str) -> set[str]:
        return {i["name"] for i in httpx.get(f"{images}?{query}", headers=admin).json()["images"]}
    assert "kilonova-tiny" in names("created_at=gte:2000-01-01T00:00:00Z")
    assert "kilonova-tiny" not in names("created_at=lt:2000-01-01T00:00:00Z")


def test_a_subnet_needs_its_ip_version(cloud, admin, boot):
    response = httpx.post(cloud.urls["network"] + "/v2.0/subnets", headers=admin,
                          json={"subnet": {"network_id": boot.net_id, "cidr": "10.99.0.0/24"}})
    assert response.status_code == 400
    assert "'ip_version' not specified" in response.json()["NeutronError"]["message"]
