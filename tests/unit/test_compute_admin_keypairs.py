"""/v2.1/os-keypairs: generation, import, fingerprints, per-user ownership and microversion differences."""
import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _fingerprint(public: str) -> str:
    digest = hashlib.md5(base64.b64decode(public.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


async def test_generate_returns_private_key_once(api):
    old = await api.post("/os-keypairs", {"keypair": {"name": "gen-old"}})
    assert old.status_code == 200 and "type" not in old.json()["keypair"]
    created = await api.post("/os-keypairs", {"keypair": {"name": "gen"}}, version="2.2")
    assert created.status_code == 201
    keypair = created.json()["keypair"]
    assert keypair["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert keypair["public_key"].startswith("ssh-rsa ") and keypair["type"] == "ssh"
    assert keypair["user_id"] == "admin-user" and keypair["fingerprint"] == _fingerprint(keypair["public_key"])
    shown = (await api.get("/os-keypairs/gen", version="2.2")).json()["keypair"]
    assert "private_key" not in shown
    assert {"created_at", "deleted", "deleted_at", "id", "user_id", "updated_at", "type"} <= set(shown)
    assert "type" not in (await api.get("/os-keypairs/gen")).json()["keypair"]
    listed = (await api.get("/os-keypairs", version="2.2")).json()["keypairs"]
    assert sorted(k["keypair"]["name"] for k in listed) == ["gen", "gen-old"]
    assert set(listed[0]["keypair"]) == {"name", "public_key", "fingerprint", "type"}


async def test_import_fingerprint_duplicates_and_validation(api):
    public = _public_key()
    imported = await api.post("/os-keypairs", {"keypair": {"name": "imp", "public_key": public + " me@host\n"}},
                              version="2.2")
    assert imported.status_code == 201 and "private_key" not in imported.json()["keypair"]
    assert imported.json()["keypair"]["fingerprint"] == _fingerprint(public)
    dup = await api.post("/os-keypairs", {"keypair": {"name": "imp", "public_key": public}}, version="2.2")
    assert dup.status_code == 409
    assert dup.json()["conflictingRequest"]["message"] == "Key pair 'imp' already exists."
    bad_key = await api.post("/os-keypairs", {"keypair": {"name": "x", "public_key": "ssh-rsa garbage"}})
    assert bad_key.status_code == 400
    assert bad_key.json()["badRequest"]["message"] == "Keypair data is invalid: failed to generate fingerprint"
    unsafe = await api.post("/os-keypairs", {"keypair": {"name": "bad/name"}})
    assert unsafe.status_code == 400 and "unsafe characters" in unsafe.json()["badRequest"]["message"]
    for body in ({"keypair": {"name": ""}}, {"keypair": {}}, {"keypair": {"name": "a", "type": "pgp"}},
                 {"keypair": {"name": "a", "type": "ssh"}}):
        version = "2.2" if body["keypair"].get("type") == "pgp" else None
        assert (await api.post("/os-keypairs", body, version=version)).status_code == 400, body


async def test_x509_keypair(api):
    created = await api.post("/os-keypairs", {"keypair": {"name": "cert", "type": "x509"}}, version="2.2")
    keypair = created.json()["keypair"]
    assert keypair["type"] == "x509" and keypair["public_key"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(keypair["fingerprint"].split(":")) == 20


async def test_other_users_and_delete_codes(api):
    await api.post("/os-keypairs", {"keypair": {"name": "mine"}}, token="demo-token")
    assert [k["keypair"]["name"] for k in (await api.get("/os-keypairs")).json()["keypairs"]] == []
    assert (await api.get("/os-keypairs/mine")).status_code == 404
    theirs = await api.get("/os-keypairs", params={"user_id": "demo-user"}, version="2.10")
    assert [k["keypair"]["name"] for k in theirs.json()["keypairs"]] == ["mine"]
    denied = await api.get("/os-keypairs", params={"user_id": "admin-user"}, version="2.10", token="demo-token")
    assert denied.status_code == 403
    for_demo = await api.post("/os-keypairs", {"keypair": {"name": "given", "user_id": "demo-user"}},
                              version="2.10")
    assert for_demo.status_code == 201 and for_demo.json()["keypair"]["user_id"] == "demo-user"
    assert (await api.post("/os-keypairs", {"keypair": {"name": "x", "user_id": "admin-user"}}, version="2.10",
                           token="demo-token")).status_code == 403
    assert (await api.delete("/os-keypairs/given", token="demo-token")).status_code == 202
    assert (await api.delete("/os-keypairs/mine", token="demo-token", version="2.2")).status_code == 204
    assert (await api.delete("/os-keypairs/mine", token="demo-token")).status_code == 404


async def test_pagination_from_2_35(api):
    for name in ("k1", "k2", "k3"):
        await api.post("/os-keypairs", {"keypair": {"name": name, "public_key": _public_key()}})
    page = (await api.get("/os-keypairs", params={"limit": "2"}, version="2.35")).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["k1", "k2"]
    assert "marker=k2" in page["keypairs_links"][0]["href"]
    rest = (await api.get("/os-keypairs", params={"limit": "2", "marker": "k2"}, version="2.35")).json()
    assert [k["keypair"]["name"] for k in rest["keypairs"]] == ["k3"]
    everything = (await api.get("/os-keypairs", params={"limit": "2"}, version="2.34")).json()
    assert len(everything["keypairs"]) == 3 and "keypairs_links" not in everything
    assert (await api.get("/os-keypairs", params={"marker": "zz"}, version="2.35")).status_code == 400
