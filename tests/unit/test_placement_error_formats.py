"""Placement error bodies follow the Accept header as upstream's (webob's) do: JSON when the client takes
it (no Accept and ``*/*`` count as JSON), HTML when the client prefers it, plain text otherwise. The
expected bodies are upstream openstack-placement 16.0.0's, byte for byte (request ids aside)."""
from __future__ import annotations

import re

import httpx
import pytest

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement.accept import acceptable_offers
from kilonova.placement.service import PlacementService

MISSING = "/resource_providers/00000000-0000-0000-0000-000000000000"
BAD_QUERY = "/resource_providers?member_of=bad"
NOT_FOUND_TEXT = ("404 Not Found\n\nThe resource could not be found.\n\n "
                  "No resource provider with uuid 00000000-0000-0000-0000-000000000000 found  ")
BAD_QUERY_TEXT = ("400 Bad Request\n\nThe server could not comply with the request since it is either malformed or "
                  "otherwise incorrect.\n\n Invalid query string parameters: Expected 'member_of' parameter to "
                  "contain valid UUID(s). Got: bad  ")
PLAIN = "text/plain; charset=UTF-8"
HTML = "text/html; charset=UTF-8"


def html_page(status: str, body: str) -> str:
    return (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  <h1>{status}</h1>\n  {body}\n"
            " </body>\n</html>")


@pytest.fixture(scope="module")
async def placement(tmp_path_factory):
    conf = Config.load(state_dir=tmp_path_factory.mktemp("placement"),
                       overrides={"placement": {"auth_strategy": "noauth2"}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        async def get(path: str, accept: str | None, version: str = "1.30", token: str | None = "admin",
                      method: str = "GET", content: bytes | None = None):
            headers = {"OpenStack-API-Version": f"placement {version}", "Content-Type": "application/json"}
            if token:
                headers["X-Auth-Token"] = token
            if accept is not None:
                headers["Accept"] = accept
            return await http.request(method, path, headers=headers, content=content)
        yield get
    svc.db.close()


def masked(response: httpx.Response) -> str:
    return re.sub(r"req-[0-9a-f-]{36}", "req-X", response.text)


@pytest.mark.parametrize("accept", ["text/plain", "image/png", "application/json;q=0"])
async def test_a_get_refusing_json_gets_a_plain_text_406(placement, accept):
    response = await placement("/resource_providers", accept)
    assert response.status_code == 406
    assert response.headers["content-type"] == PLAIN
    assert response.text == ("406 Not Acceptable\n\nThe resource could not be generated that was acceptable to your "
                             f"browser (content of type {accept}. \n\n Only application/json is provided")


async def test_a_get_asking_for_html_gets_an_html_406(placement):
    response = await placement("/resource_providers", "text/html")
    assert response.status_code == 406
    assert response.headers["content-type"] == HTML
    assert response.text == html_page("406 Not Acceptable", (
        "The resource could not be generated that was acceptable to your browser\n(content of type text/html. "
        "<br /><br />\nOnly application/json is provided"))


async def test_errors_are_plain_text_when_json_is_not_accepted(placement):
    # only GETs refuse such an Accept with 406; an unknown route and a bad body answer first
    response = await placement("/nope", "text/plain")
    assert (response.status_code, response.headers["content-type"]) == (404, PLAIN)
    assert response.text == "404 Not Found\n\nThe resource could not be found.\n\n   "
    response = await placement("/resource_providers", "text/plain", method="POST", content=b"{bad")
    assert (response.status_code, response.headers["content-type"]) == (400, PLAIN)
    assert response.text == ("400 Bad Request\n\nThe server could not comply with the request since it is either "
                             "malformed or otherwise incorrect.\n\n Malformed JSON: Expecting property name enclosed "
                             "in double quotes: line 1 column 2 (char 1)  ")


@pytest.mark.parametrize("path, status, text", [(MISSING, 404, NOT_FOUND_TEXT), (BAD_QUERY, 400, BAD_QUERY_TEXT)])
async def test_an_unparsable_accept_gets_html(placement, path, status, text):
    # webob takes an invalid Accept as no preference (its first offer, HTML); the GET's check lets it by
    response = await placement(path, "garbage, not a media range")
    assert (response.status_code, response.headers["content-type"]) == (status, HTML)
    explanation, message = text.split("\n\n")[1:]
    body = f"{explanation}<br /><br />\n{message.strip()}\n\n".replace("'", "&#x27;")
    assert response.text == html_page(text.split("\n", 1)[0], body)


@pytest.mark.parametrize("accept", [None, "*/*", "application/json;q=0.5, text/plain",
                                    "text/html;q=0.1, application/json"])
async def test_errors_are_upstreams_json_when_json_is_accepted(placement, accept):
    response = await placement(MISSING, accept)
    assert (response.status_code, response.headers["content-type"]) == (404, "application/json")
    assert masked(response) == (
        '{"errors": [{"status": 404, "title": "Not Found", "detail": "The resource could not be found.\\n\\n '
        'No resource provider with uuid 00000000-0000-0000-0000-000000000000 found  ", '
        '"code": "placement.undefined_code", "request_id": "req-X"}]}')
    response = await placement(BAD_QUERY, accept, version="1.22")
    assert (response.status_code, response.headers["content-type"]) == (400, "application/json")
    assert response.json()["errors"][0]["detail"] == BAD_QUERY_TEXT.split("\n\n", 1)[1]
    assert "code" not in response.json()["errors"][0]    # before 1.23


@pytest.mark.parametrize("accept", ["text/html", "application/json, text/html", "text/*", "*/*;q=0.8"])
async def test_html_wins_when_the_client_takes_it_at_least_as_much_as_json(placement, accept):
    response = await placement("/nope", accept)
    assert (response.status_code, response.headers["content-type"]) == (404, HTML)
    assert response.text == html_page("404 Not Found", "The resource could not be found.<br /><br />\n\n\n")


async def test_html_escapes_what_the_request_put_in_the_message(placement):
    # (upstream shows the path's UTF-8 bytes as Latin-1 there, a WSGI artefact not copied)
    response = await placement("/resource_providers/x\u00e9<b>", "text/html, application/json;q=0.5")
    assert (response.status_code, response.headers["content-type"]) == (404, HTML)
    assert "No resource provider with uuid x&#233;&lt;b&gt; found" in response.text
    response = await placement("/resource_providers/x<b>y", "application/json")
    assert "uuid xy found" in response.json()["errors"][0]["detail"]    # webob strips tags from text


async def test_version_negotiation_errors_follow_accept_too(placement):
    response = await placement("/resource_providers", "text/plain", version="9.99")
    assert (response.status_code, response.headers["content-type"]) == (406, PLAIN)
    assert response.text.endswith("(content of type text/plain. \n\n Invalid microversion: Unacceptable version "
                                  "header: 9.99")
    response = await placement("/resource_providers", None, version="9.99")
    error = response.json()["errors"][0]
    assert error["detail"] == ("The resource could not be generated that was acceptable to your browser (content "
                               "of type application/json. \n\n Invalid microversion: Unacceptable version header: 9.99")
    assert (error["min_version"], error["max_version"]) == ("1.0", "1.39")


@pytest.mark.parametrize("version, reason", [
    ("1.x", "invalid literal for int() with base 10: 'x'"),
    ("abc", "invalid literal for int() with base 10: 'abc'"),
    ("1.", "invalid literal for int() with base 10: ''"),
    ("1.2.3", "invalid literal for int() with base 10: '2.3'"),
    ("1 2", "invalid literal for int() with base 10: '1 2'"),
    ("Latest", "invalid literal for int() with base 10: 'Latest'"),   # only 'latest' is a keyword
    ("1", "Version.__new__() missing 1 required positional argument: 'minor'"),
])
async def test_a_malformed_version_gets_upstreams_400_with_the_parse_error(placement, version, reason):
    response = await placement("/resource_providers", None, version=version)
    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == (
        "The server could not comply with the request since it is either malformed or otherwise incorrect.\n\n "
        f"Invalid microversion: invalid version string: {version}; {reason}  ")


@pytest.mark.parametrize("version, status, served", [
    ("01.02", 200, "placement 1.2"), ("+1.2", 200, "placement 1.2"), ("1 .2", 200, "placement 1.2"),
    ("-1.0", 406, None), ("1_0.1", 406, None),   # numbers as int() reads them, as upstream
])
async def test_versions_are_read_as_upstreams_int_reads_them(placement, version, status, served):
    response = await placement("/", None, version=version)
    assert response.status_code == status
    assert response.headers.get("openstack-api-version") == served


async def test_the_last_placement_version_in_the_header_wins(placement):
    response = await placement("/", None, version="1.x, placement 1.2")
    assert (response.status_code, response.headers["openstack-api-version"]) == (200, "placement 1.2")
    response = await placement("/", None, version="1.2, placement 1.x")
    assert response.status_code == 400


@pytest.mark.parametrize("sub, joint", [("/traits", ": "), ("/inventories", " : "), ("/inventories/VCPU", " : "),
                                        ("/aggregates", None)])
async def test_an_unknown_providers_404_repeats_the_message_where_upstream_does(placement, sub, joint):
    message = "No resource provider with uuid 00000000-0000-0000-0000-000000000000 found"
    for version, coded in (("1.39", True), ("1.6", False)):
        response = await placement(MISSING + sub, None, version=version)
        error = response.json()["errors"][0]
        assert response.status_code == 404
        assert error["detail"] == ("The resource could not be found.\n\n "
                                   + (f"{message}{joint}{message}" if joint else message) + "  ")
        assert ("code" in error) == coded


@pytest.mark.parametrize("method, sub, status", [
    ("PUT", "", 404), ("PUT", "/inventories", 404), ("POST", "/inventories", 404), ("PUT", "/inventories/VCPU", 404),
    ("PUT", "/aggregates", 404),
    ("PUT", "/traits", 400),   # upstream reads the body before the provider here only
])
async def test_an_unknown_provider_is_answered_before_a_bad_body_as_upstream(placement, method, sub, status):
    for content in (b"{nope", b'{"bogus": 1}', b"[]"):
        response = await placement(MISSING + sub, None, version="1.39", method=method, content=content)
        assert response.status_code == status
    response = await placement(MISSING + "/inventories", None, version="1.39", method="POST",
                               content=b'{"resource_class": "VCPU", "total": 4, "reserved": 5}')
    assert response.status_code == 404   # the refused capacity comes after the lookup too


@pytest.mark.parametrize("accept, content_type, start", [
    (None, "application/json", '{"message": "This server could not verify'),
    ("text/plain", PLAIN, "401 Unauthorized\n\nThis server could not verify"),
    ("text/html", HTML, "<html>\n <head>\n  <title>401 Unauthorized</title>"),
])
async def test_noauth_401_follows_accept(placement, accept, content_type, start):
    response = await placement("/resource_providers", accept, token=None)
    assert (response.status_code, response.headers["content-type"]) == (401, content_type)
    assert response.text.startswith(start)


def test_accept_matching_follows_webob():
    offers = ("text/html", "application/json")
    assert acceptable_offers("application/json, text/html", offers) == ["text/html", "application/json"]
    assert acceptable_offers("text/html;q=0.1, application/json;q=0.2", offers) == ["application/json", "text/html"]
    assert acceptable_offers("text/html;level=1, application/json;q=0.9", offers) == ["application/json"]
    assert acceptable_offers("*/*;q=0.5, application/json;q=0", offers) == ["text/html"]
    assert acceptable_offers(", ,TEXT/HTML ,", offers) == ["text/html"]
    assert acceptable_offers("text/html;q=2", offers) == list(offers)   # invalid: no preference
    assert acceptable_offers("", offers) == []


@pytest.mark.parametrize("path, version, status", [
    ("/resource_providers", "1.30", 406),                      # the Accept check comes before the policy's 403
    (MISSING + "/aggregates", "1.0", 406),                     # ... and, here, before the route's version range
    ("/traits", "1.0", 404),                                   # ... but after it for these, as upstream
    ("/allocation_candidates?resources=VCPU:1", "1.0", 404),
])
async def test_a_refused_accept_is_answered_in_upstreams_order(placement, path, version, status):
    response = await placement(path, "text/plain", version=version, token="bob")
    assert (response.status_code, response.headers["content-type"]) == (status, PLAIN)
