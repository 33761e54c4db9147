"""/v2.1/os-keypairs: each user's SSH (and x509) keys, generated here or imported."""
from __future__ import annotations

import base64
import binascii
import hashlib
import string
from datetime import datetime, timedelta
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request

from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.compute.api import common, query_params, validation
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import limit_and_marker, next_links
from kilonova.compute.api.microversions import want
from kilonova.compute import quota
from kilonova.compute.db import keypairs

_SAFE = set("_- " + string.digits + string.ascii_letters)


def _create_schema(*, typed: bool, with_user: bool) -> dict:
    props: dict[str, Any] = {"name": validation.NAME, "public_key": {"type": "string"}}
    if typed:
        props["type"] = {"type": "string", "enum": ["ssh", "x509"]}
    if with_user:
        props["user_id"] = {"type": "string"}
    return {"type": "object", "required": ["keypair"], "additionalProperties": False,
            "properties": {"keypair": {"type": "object", "properties": props, "required": ["name"],
                                       "additionalProperties": False}}}


_CREATE = _create_schema(typed=False, with_user=False)
_CREATE_22 = _create_schema(typed=True, with_user=False)
_CREATE_210 = _create_schema(typed=True, with_user=True)
# 2.92: keys are imported only (no more generated private keys), and names may hold '@' and '.'.
_CREATE_292 = _create_schema(typed=True, with_user=True)
_CREATE_292["properties"]["keypair"]["required"] = ["name", "public_key"]
_CREATE_292["properties"]["keypair"]["properties"]["name"] = {
    "allOf": [validation.NAME, {"type": "string", "pattern": r"^[_\-\@\. a-zA-Z0-9]+$", "minLength": 1,
                                "maxLength": 255}]}
_SAFE_292 = _SAFE | set("@.")


def _invalid(reason: str) -> HTTPError:
    return HTTPError(400, f"Keypair data is invalid: {reason}")


# ---------------------------------------------------------------- key material

def _colon_hex(digest: str) -> str:
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def ssh_fingerprint(public_key: str) -> str:
    """Nova's fingerprint: MD5 of the decoded key blob, as colon-separated hex."""
    try:
        serialization.load_ssh_public_key(public_key.strip().encode())
        blob = base64.b64decode(public_key.split()[1])
    except (ValueError, IndexError, binascii.Error, TypeError):
        raise _invalid("failed to generate fingerprint") from None
    return _colon_hex(hashlib.md5(blob).hexdigest())


def x509_fingerprint(pem: str) -> str:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise _invalid(f"failed to generate X509 fingerprint. Error message: {exc}") from None
    return _colon_hex(cert.fingerprint(hashes.SHA1()).hex())


def _new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def generate_ssh() -> tuple[str, str]:
    """(private key PEM, public key in OpenSSH format)."""
    key = _new_rsa()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public + " Generated-by-Nova"


def generate_x509(user_id: str) -> tuple[str, str]:
    """(private key PEM, self-signed client certificate PEM), like Nova's WinRM certificates."""
    key = _new_rsa()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id or "kilonova")])
    now = datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, cert.public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------- helpers

def _target_user(request: Request, action: str, requested: str | None) -> str:
    """The user whose keypairs are meant; another user's only for admins (from 2.10)."""
    ctx = request.state.context
    user_id = requested if (requested and want(request, "2.10")) else ctx.user_id
    common.authorize(request, f"os_compute_api:os-keypairs:{action}", {"user_id": user_id})
    return user_id


def _summary(request: Request, row) -> dict[str, Any]:
    body = {"name": row.name, "public_key": row.public_key, "fingerprint": row.fingerprint}
    if want(request, "2.2"):
        body["type"] = row.type
    return body


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _check_name(name: str, safe: set[str] = _SAFE) -> None:
    if set(name) - safe:
        raise _invalid("Keypair name contains unsafe characters")
    if not 1 <= len(name) <= 255:
        raise _invalid("Keypair name must be string and between 1 and 255 characters long")


def _create_in_db(session, values: dict[str, Any], limit: int, refuse: Callable[[int], HTTPError]):
    """Counted in the writing transaction: racing creates never pass the limit."""
    held = keypairs.count(session, values["user_id"])
    if 0 <= limit <= held:
        raise refuse(held)
    return keypairs.create(session, values)


# ---------------------------------------------------------------- handlers

async def create_keypair(request: Request):
    body = await read_json(request)
    schema = _CREATE_292 if want(request, "2.92") else _CREATE_210 if want(request, "2.10") else \
        _CREATE_22 if want(request, "2.2") else _CREATE
    validation.validate(schema, body)
    params = body["keypair"]
    ctx = request.state.context
    user_id = _target_user(request, "create", params.get("user_id"))
    name, key_type = params["name"], params.get("type", "ssh")
    _check_name(name, _SAFE_292 if want(request, "2.92") else _SAFE)
    private_key = None
    if "public_key" in params:
        public_key = params["public_key"]
        fingerprint = x509_fingerprint(public_key) if key_type == "x509" else ssh_fingerprint(public_key)
    else:
        private_key, public_key = generate_x509(user_id) if key_type == "x509" else generate_ssh()
        fingerprint = x509_fingerprint(public_key) if key_type == "x509" else ssh_fingerprint(public_key)
    svc = compute_api(request)
    limit = (await quota.limits(svc, ctx.project_id)).get("key_pairs", -1)
    values = {"user_id": user_id, "name": name, "public_key": public_key, "fingerprint": fingerprint,
              "type": key_type}
    try:
        row = await svc.api_db.write(_create_in_db, values, limit, lambda held: quota.refusal(
            svc, "key_pairs", limit, held, 1, "Quota exceeded, too many key pairs."))
    except Conflict:
        raise HTTPError(409, f"Key pair '{name}' already exists.") from None
    keypair = dict(_summary(request, row), user_id=user_id)
    if private_key is not None:
        keypair["private_key"] = private_key
    return json_response({"keypair": keypair}, 201 if want(request, "2.2") else 200)


# From 2.102 the query schemas are closed: a parameter they do not name is a 400, not ignored.
_LIST_QUERY = {"user_id": query_params.STRING, "limit": query_params.STRING, "marker": query_params.STRING}
_ONE_QUERY = {"user_id": query_params.STRING}


async def list_keypairs(request: Request):
    query_params.closed_from_2102(request, _LIST_QUERY)
    user_id = _target_user(request, "index", request.query_params.get("user_id"))
    limit, marker = (limit_and_marker(request) if want(request, "2.35") else (None, None))
    try:
        rows = await compute_api(request).api_db.read(keypairs.list_for_user, user_id, limit=limit, marker=marker)
    except keypairs.MarkerNotFound as exc:
        raise HTTPError(400, str(exc)) from None
    body: dict[str, Any] = {"keypairs": [{"keypair": _summary(request, row)} for row in rows]}
    if limit is not None:
        page_links = next_links(request, "os-keypairs", [row.name for row in rows], limit)
        if page_links:
            body["keypairs_links"] = page_links
    return json_response(body)


async def _get(request: Request, action: str, name: str):
    query_params.closed_from_2102(request, _ONE_QUERY)
    user_id = _target_user(request, action, request.query_params.get("user_id"))
    try:
        return await compute_api(request).api_db.read(keypairs.get, user_id, name)
    except NotFound:
        raise HTTPError(404, f"Keypair {name} not found for user {user_id}") from None


async def show_keypair(request: Request, name: str):
    row = await _get(request, "show", name)
    keypair = dict(_summary(request, row), created_at=_iso(row.created_at), deleted=False, deleted_at=None,
                   id=row.id, user_id=row.user_id, updated_at=None)
    return json_response({"keypair": keypair})


async def delete_keypair(request: Request, name: str):
    row = await _get(request, "delete", name)
    try:
        await compute_api(request).api_db.write(keypairs.delete, row.user_id, name)
    except NotFound:
        raise HTTPError(404, f"Keypair {name} not found for user {row.user_id}") from None
    return empty_response(204 if want(request, "2.2") else 202)


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-keypairs", list_keypairs)
    router.add("POST", "/v2.1/os-keypairs", create_keypair)
    router.add("GET", "/v2.1/os-keypairs/{name}", show_keypair)
    router.add("DELETE", "/v2.1/os-keypairs/{name}", delete_keypair)
