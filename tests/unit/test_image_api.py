"""The image service's Glance v2 API, driven in-process with a fake token validator."""
import hashlib

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.image.service import ImageService

ADMIN = {"X-Auth-Token": "admin", "Accept": "application/json"}
ALICE = {"X-Auth-Token": "alice", "Accept": "application/json"}
BOB = {"X-Auth-Token": "bob", "Accept": "application/json"}
READER = {"X-Auth-Token": "reader", "Accept": "application/json"}
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"


@pytest.fixture(scope="module")
async def svc(tmp_path_factory):
    validator = FakeValidator({"admin": ("admin", "p-admin", ["admin", "member", "reader"]),
                               "alice": ("alice", "p-alice", ["member", "reader"]),
                               "bob": ("bob", "p-bob", ["member", "reader"]),
                               "reader": ("rita", "p-alice", ["reader"])})
    env = service_env(tmp_path_factory.mktemp("image"), {"image": {"image_size_cap": str(1 << 20)}})
    service = ImageService(env, validator=validator)
    service.prepare()
    yield service
    service.db.close()


@pytest.fixture(scope="module")
async def api(svc):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://image.test") as c:
        yield c


async def create(api, headers=ALICE, **body):
    response = await api.post("/v2/images", json={"disk_format": "raw", "container_format": "bare", **body},
                              headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_versions_are_public(api):
    response = await api.get("/")
    assert response.status_code == 300
    versions = response.json()["versions"]
    assert versions[0]["status"] == "CURRENT"
    assert versions[0]["links"][0]["href"] == "http://image.test/v2/"
    assert (await api.get("/versions")).status_code == 200


async def test_token_required_and_errors_rendered_like_glance(api):
    response = await api.get("/v2/images", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.json()["code"] == "401 Unauthorized"
    response = await api.get("/v2/images/00000000-0000-0000-0000-000000000000", headers=ALICE)
    assert response.status_code == 404
    assert response.json() == {"message": "No image found with ID 00000000-0000-0000-0000-000000000000",
                               "code": "404 Not Found", "title": "Not Found"}
    plain = await api.get("/v2/images/nope", headers={"X-Auth-Token": "alice", "Accept": "text/plain"})
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.text.startswith("404 Not Found\n\nNo image found with ID nope")
    page = await api.get("/v2/images/nope", headers={"X-Auth-Token": "alice", "Accept": "*/*"})
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>404 Not Found</h1>" in page.text and "No image found with ID nope" in page.text


async def test_create_shows_glance_fields(api):
    image = await create(api, name="cirros", min_ram=64, tags=["a", "b"], hw_disk_bus="virtio")
    assert image["status"] == "queued"
    assert image["visibility"] == "private"
    assert image["owner"] == "p-alice"
    assert image["hw_disk_bus"] == "virtio"
    assert image["tags"] == ["a", "b"]
    for key in ("checksum", "size", "virtual_size", "os_hash_algo", "os_hash_value"):
        assert image[key] is None
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert image["os_hidden"] is False and image["protected"] is False
    assert image["created_at"].endswith("Z")


async def test_create_validation(api):
    bad = await api.post("/v2/images", json={"disk_format": "floppy"}, headers=ALICE)
    assert bad.status_code == 400
    assert "does not match schema 'image'" in bad.json()["message"]
    assert (await api.post("/v2/images", json={"status": "active"}, headers=ALICE)).status_code == 403
    assert (await api.post("/v2/images", json={"extra": 5}, headers=ALICE)).status_code == 400
    assert (await api.post("/v2/images", json={"visibility": "public"}, headers=ALICE)).status_code == 403
    assert (await api.post("/v2/images", json={"name": "r"}, headers=READER)).status_code == 403
    fixed = "5c7c3f24-6a9e-4a1b-8a63-4d2b0f4b1a11"
    assert (await api.post("/v2/images", json={"id": fixed}, headers=ALICE)).status_code == 201
    assert (await api.post("/v2/images", json={"id": fixed}, headers=ALICE)).status_code == 409


async def test_upload_download_and_checksums(api):
    image = await create(api, name="data")
    payload = b"kilonova" * 5000
    url = f"/v2/images/{image['id']}/file"
    assert (await api.get(url, headers=ALICE)).status_code == 204
    response = await api.put(url, content=payload, headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert response.status_code == 204, response.text
    shown = (await api.get(f"/v2/images/{image['id']}", headers=ALICE)).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(payload) == shown["virtual_size"]
    assert shown["checksum"] == hashlib.md5(payload).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(payload).hexdigest()
    download = await api.get(url, headers=ALICE)
    assert download.status_code == 200
    assert download.content == payload
    assert download.headers["Content-MD5"] == shown["checksum"]
    head = await api.head(url, headers=ALICE)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(payload))
    again = await api.put(url, content=b"x", headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert again.status_code == 409


async def test_upload_rules(api, svc):
    image = await create(api, name="rules")
    url = f"/v2/images/{image['id']}/file"
    wrong_type = await api.put(url, content=b"x", headers={**ALICE, "Content-Type": "application/json"})
    assert wrong_type.status_code == 415

    async def too_big():
        for _ in range(20):
            yield b"\0" * 65536 * 2

    response = await api.put(url, content=too_big(), headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert response.status_code == 413
    assert (await api.get(f"/v2/images/{image['id']}", headers=ALICE)).json()["status"] == "queued"
    assert not list(svc.store.datadir.glob(image["id"] + "*"))
    other = await api.put(url, content=b"x", headers={**BOB, "Content-Type": "application/octet-stream"})
    assert other.status_code == 404


async def test_qcow2_upload_has_virtual_size(api):
    from kilonova.image import qcow2
    image = await create(api, name="q", disk_format="qcow2")
    data = qcow2.empty_image(virtual_size=2 << 30)
    await api.put(f"/v2/images/{image['id']}/file", content=data,
                  headers={**ALICE, "Content-Type": "application/octet-stream"})
    shown = (await api.get(f"/v2/images/{image['id']}", headers=ALICE)).json()
    assert shown["virtual_size"] == 2 << 30 and shown["size"] == len(data)


async def test_visibility_isolation(api):
    private = await create(api, name="alice-private")
    public = await create(api, headers=ADMIN, name="admin-public", visibility="public")
    community = await create(api, name="alice-community", visibility="community")
    assert (await api.get(f"/v2/images/{private['id']}", headers=BOB)).status_code == 404
    assert (await api.get(f"/v2/images/{public['id']}", headers=BOB)).status_code == 200
    assert (await api.get(f"/v2/images/{community['id']}", headers=BOB)).status_code == 200
    bob_ids = {i["id"] for i in (await api.get("/v2/images", params={"limit": 1000}, headers=BOB)).json()["images"]}
    assert public["id"] in bob_ids
    assert private["id"] not in bob_ids and community["id"] not in bob_ids
    everything = await api.get("/v2/images", params={"visibility": "all", "limit": 1000}, headers=BOB)
    assert community["id"] in {i["id"] for i in everything.json()["images"]}
    admin_ids = {i["id"] for i in (await api.get("/v2/images", params={"limit": 1000}, headers=ADMIN)).json()["images"]}
    assert private["id"] in admin_ids
    assert (await api.delete(f"/v2/images/{public['id']}", headers=BOB)).status_code == 403
    patch = [{"op": "replace", "path": "/name", "value": "mine"}]
    response = await api.patch(f"/v2/images/{public['id']}", json=patch,
                               headers={**BOB, "Content-Type": PATCH_TYPE})
    assert response.status_code == 403


async def test_sharing_with_members(api):
    shared = await create(api, name="shared-one", visibility="shared")
    members = f"/v2/images/{shared['id']}/members"
    assert (await api.get(f"/v2/images/{shared['id']}", headers=BOB)).status_code == 404
    added = await api.post(members, json={"member": "p-bob"}, headers=ALICE)
    assert added.status_code == 200 and added.json()["status"] == "pending"
    assert (await api.get(f"/v2/images/{shared['id']}", headers=BOB)).status_code == 200
    listed = lambda: api.get("/v2/images", params={"limit": 1000}, headers=BOB)  # noqa: E731
    assert shared["id"] not in {i["id"] for i in (await listed()).json()["images"]}
    pending = await api.get("/v2/images", params={"member_status": "pending", "visibility": "shared"}, headers=BOB)
    assert [i["id"] for i in pending.json()["images"]] == [shared["id"]]
    assert (await api.put(f"{members}/p-bob", json={"status": "accepted"}, headers=ALICE)).status_code == 403
    accepted = await api.put(f"{members}/p-bob", json={"status": "accepted"}, headers=BOB)
    assert accepted.json()["status"] == "accepted"
    assert shared["id"] in {i["id"] for i in (await listed()).json()["images"]}
    assert (await api.delete(f"{members}/p-bob", headers=ALICE)).status_code == 204
    assert (await api.get(f"/v2/images/{shared['id']}", headers=BOB)).status_code == 404


async def test_protected_delete(api, svc):
    image = await create(api, name="keep", protected=True)
    await api.put(f"/v2/images/{image['id']}/file", content=b"abc",
                  headers={**ALICE, "Content-Type": "application/octet-stream"})
    response = await api.delete(f"/v2/images/{image['id']}", headers=ALICE)
    assert response.status_code == 403
    assert "is protected and cannot be deleted" in response.json()["message"]
    unprotect = [{"op": "replace", "path": "/protected", "value": False}]
    await api.patch(f"/v2/images/{image['id']}", json=unprotect, headers={**ALICE, "Content-Type": PATCH_TYPE})
    assert (await api.delete(f"/v2/images/{image['id']}", headers=ALICE)).status_code == 204
    assert (await api.get(f"/v2/images/{image['id']}", headers=ALICE)).status_code == 404
    assert not svc.store.exists(image["id"])


async def test_patch(api):
    image = await create(api, name="before", os_distro="cirros")
    url = f"/v2/images/{image['id']}"
    ops = [{"op": "replace", "path": "/name", "value": "after"},
           {"op": "add", "path": "/hw_qemu_guest_agent", "value": "yes"},
           {"op": "remove", "path": "/os_distro"},
           {"op": "add", "path": "/tags", "value": ["x"]},
           {"op": "replace", "path": "/min_ram", "value": 128}]
    response = await api.patch(url, json=ops, headers={**ALICE, "Content-Type": PATCH_TYPE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "after" and body["hw_qemu_guest_agent"] == "yes" and "os_distro" not in body
    assert body["tags"] == ["x"] and body["min_ram"] == 128
    assert (await api.get(url, headers=ALICE)).json()["name"] == "after"
    wrong = await api.patch(url, json=ops, headers={**ALICE, "Content-Type": "application/json"})
    assert wrong.status_code == 415 and "Accept-Patch" in wrong.headers

    async def status(ops):
        return (await api.patch(url, json=ops, headers={**ALICE, "Content-Type": PATCH_TYPE})).status_code

    assert await status([{"op": "replace", "path": "/status", "value": "active"}]) == 403
    assert await status([{"op": "remove", "path": "/nothing"}]) == 409
    assert await status([{"op": "replace", "path": "/nothing", "value": "x"}]) == 409
    assert await status([{"op": "replace", "path": "/visibility", "value": "public"}]) == 403
    assert await status([{"op": "replace", "path": "/min_ram", "value": "lots"}]) == 400
    assert await status([{"op": "jump", "path": "/name"}]) == 400
    v20 = await api.patch(url, json=[{"replace": "/name", "value": "old-dialect"}],
                          headers={**ALICE, "Content-Type": "application/openstack-images-v2.0-json-patch"})
    assert v20.json()["name"] == "old-dialect"


async def test_writes_answer_what_a_get_shows(api):
    """Create, patch, upload and delete answer the image as it is stored: properties, tags, status."""
    image = await create(api, name="snap", os_distro="cirros", hw_disk_bus="virtio", tags=["a", "b", "a"])
    url = f"/v2/images/{image['id']}"

    async def shown():
        return (await api.get(url, headers=ALICE)).json()

    assert image == await shown() and image["tags"] == ["a", "b"] and image["status"] == "queued"
    ops = [{"op": "replace", "path": "/os_distro", "value": "debian"}, {"op": "remove", "path": "/hw_disk_bus"},
           {"op": "add", "path": "/hw_qemu_guest_agent", "value": "yes"},
           {"op": "replace", "path": "/tags", "value": ["b", "c"]},
           {"op": "replace", "path": "/disk_format", "value": "qcow2"}]
    patched = (await api.patch(url, json=ops, headers={**ALICE, "Content-Type": PATCH_TYPE})).json()
    assert patched == await shown()
    assert patched["os_distro"] == "debian" and "hw_disk_bus" not in patched
    assert patched["hw_qemu_guest_agent"] == "yes" and patched["tags"] == ["b", "c"]
    assert patched["disk_format"] == "qcow2"
    await api.post(f"{url}/members", json={"member": "p-bob"}, headers=ALICE)
    from kilonova.image import qcow2
    data = qcow2.empty_image()
    uploaded = await api.put(f"{url}/file", content=data, headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 204
    active = await shown()
    assert active["status"] == "active" and active["size"] == len(data) and active["os_distro"] == "debian"
    again = await api.put(f"{url}/file", content=b"y", headers={**ALICE, "Content-Type": "application/octet-stream"})
    assert again.status_code == 409
    assert (await api.delete(url, headers=ALICE)).status_code == 204
    assert (await api.get(url, headers=ALICE)).status_code == 404
    assert (await api.get(f"{url}/members", headers=ALICE)).status_code == 404
    same_id = await create(api, id=image["id"], name="again")
    assert same_id["tags"] == [] and "os_distro" not in same_id
    assert (await api.get(f"{url}/members", headers=ALICE)).json()["members"] == []


async def test_tags(api):
    image = await create(api, name="tagged")
    url = f"/v2/images/{image['id']}/tags"
    assert (await api.put(f"{url}/blue", headers=ALICE)).status_code == 204
    assert (await api.put(f"{url}/blue", headers=ALICE)).status_code == 204
    found = await api.get("/v2/images", params={"tag": "blue"}, headers=ALICE)
    assert [i["id"] for i in found.json()["images"]] == [image["id"]]
    assert (await api.delete(f"{url}/blue", headers=ALICE)).status_code == 204
    assert (await api.delete(f"{url}/blue", headers=ALICE)).status_code == 404


async def test_list_filters_and_pagination(api):
    ids = [(await create(api, headers=BOB, name=f"page-{n}", os_type="pager"))["id"] for n in range(5)]
    first = await api.get("/v2/images", params={"os_type": "pager", "limit": 2, "sort_key": "name",
                                                "sort_dir": "asc"}, headers=BOB)
    body = first.json()
    assert [i["name"] for i in body["images"]] == ["page-0", "page-1"]
    assert body["first"] == "/v2/images" and body["schema"] == "/v2/schemas/images"
    seen = [i["id"] for i in body["images"]]
    while "next" in body:
        body = (await api.get(body["next"], headers=BOB)).json()
        seen += [i["id"] for i in body["images"]]
    assert seen == ids
    by_name = await api.get("/v2/images", params={"name": "page-3"}, headers=BOB)
    assert [i["id"] for i in by_name.json()["images"]] == [ids[3]]
    assert (await api.get("/v2/images", params={"status": "active", "owner": "p-bob"},
                          headers=BOB)).json()["images"] == []
    assert (await api.get("/v2/images", params={"sort_key": "bogus"}, headers=BOB)).status_code == 400
    assert (await api.get("/v2/images", params={"marker": "missing"}, headers=BOB)).status_code == 400
    assert (await api.get("/v2/images", params={"visibility": "weird"}, headers=BOB)).status_code == 400


async def test_schemas(api):
    image = (await api.get("/v2/schemas/image", headers=ALICE)).json()
    assert image["name"] == "image"
    assert image["additionalProperties"] == {"type": "string"}
    for key in ("id", "name", "status", "visibility", "os_hash_value", "os_hidden", "disk_format", "tags"):
        assert key in image["properties"]
    assert image["properties"]["status"]["readOnly"] is True
    assert "qcow2" in image["properties"]["disk_format"]["enum"]
    images = (await api.get("/v2/schemas/images", headers=ALICE)).json()
    assert images["properties"]["images"]["items"]["name"] == "image"
    assert (await api.get("/v2/schemas/member", headers=ALICE)).json()["name"] == "member"
    assert (await api.get("/v2/schemas/nope", headers=ALICE)).status_code == 404


async def test_unknown_method_is_405(api):
    response = await api.post("/v2/images/abc", headers=ALICE)
    assert response.status_code == 405


async def test_deactivate_and_reactivate(api):
    image = await create(api, name="deact")
    await api.put(f"/v2/images/{image['id']}/file", content=b"data",
                  headers={**ALICE, "Content-Type": "application/octet-stream"})
    url = f"/v2/images/{image['id']}/actions"
    assert (await api.post(f"{url}/deactivate", headers=ALICE)).status_code == 403
    assert (await api.post(f"{url}/deactivate", headers=ADMIN)).status_code == 204
    assert (await api.get(f"/v2/images/{image['id']}", headers=ALICE)).json()["status"] == "deactivated"
    assert (await api.get(f"/v2/images/{image['id']}/file", headers=ALICE)).status_code == 403
    assert (await api.get(f"/v2/images/{image['id']}/file", headers=ADMIN)).content == b"data"
    assert (await api.post(f"{url}/reactivate", headers=ADMIN)).status_code == 204
    assert (await api.get(f"/v2/images/{image['id']}/file", headers=ALICE)).content == b"data"
    assert (await api.post(f"{url}/reactivate", headers=ADMIN)).status_code == 204
    queued = await create(api, name="never-uploaded")
    assert (await api.post(f"/v2/images/{queued['id']}/actions/deactivate", headers=ADMIN)).status_code == 403
