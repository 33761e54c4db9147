"""Per-service endpoints (``[endpoints]``): services on separate hosts, a public URL in front.

The catalog the identity service bootstraps, and the URLs the other services use to reach each
other, follow the options; with none set every service is at ``[DEFAULT] my_ip``.
"""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from kilonova.common.catalog import catalog_urls, root_urls
from kilonova.config import Config
from tests.unit.test_identity import issue, make_conf, make_service

PLACEMENT_HOST = "192.0.2.20"
COMPUTE_PUBLIC = "https://cloud.example.com/compute/v2.1"


async def catalog_of(conf: Config) -> dict[str, dict[str, str]]:
    """service type -> interface -> URL, as a user's token shows it after the identity service started."""
    service = make_service(conf)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app),
                                     base_url="http://identity") as client:
            _, body = await issue(client, "demo", "demo")
    finally:
        service.db.close()
    return {entry["type"]: {e["interface"]: e["url"] for e in entry["endpoints"]} for entry in body["catalog"]}


async def test_the_catalog_shows_each_services_own_host_and_public_url(tmp_path):
    conf = make_conf(tmp_path)
    conf.set("DEFAULT", "my_ip", "192.0.2.1")
    conf.set("endpoints", "placement_host", PLACEMENT_HOST)
    conf.set("endpoints", "compute_public_url", COMPUTE_PUBLIC + "/")
    ports = {s: conf.getint("ports", s) for s in ("identity", "compute", "placement", "image")}
    catalog = await catalog_of(conf)
    placement = f"http://{PLACEMENT_HOST}:{ports['placement']}"
    assert catalog["placement"] == {"public": placement, "internal": placement, "admin": placement}
    internal_compute = f"http://192.0.2.1:{ports['compute']}/v2.1"
    assert catalog["compute"] == {"public": COMPUTE_PUBLIC, "internal": internal_compute, "admin": internal_compute}
    assert set(catalog["image"].values()) == {f"http://192.0.2.1:{ports['image']}"}
    assert set(catalog["identity"].values()) == {f"http://192.0.2.1:{ports['identity']}/v3"}
    # What the other services use to reach each other: the hosts, never the public URL.
    roots = root_urls(conf)
    assert roots["placement"] == placement and roots["compute"] == f"http://192.0.2.1:{ports['compute']}"

    # A service moved to another host: the next start re-points its entries, the others stay.
    conf.set("endpoints", "placement_host", "")
    conf.set("endpoints", "image_host", "image.internal")
    catalog = await catalog_of(conf)
    assert set(catalog["placement"].values()) == {f"http://192.0.2.1:{ports['placement']}"}
    assert set(catalog["image"].values()) == {f"http://image.internal:{ports['image']}"}
    assert catalog["compute"]["public"] == COMPUTE_PUBLIC


def test_without_endpoint_options_every_service_is_at_my_ip(tmp_path):
    conf = Config.load(state_dir=tmp_path, overrides={"DEFAULT": {"my_ip": "198.51.100.7"}})
    for interface in ("public", "internal", "admin"):
        urls = catalog_urls(conf, interface)
        assert all(url.startswith("http://198.51.100.7:") for url in urls.values()), urls
        assert urls["identity"].endswith("/v3") and urls["compute"].endswith("/v2.1")


@pytest.mark.parametrize("bad", ["cloud.example.com/v3", "ftp://cloud.example.com/v3", "http:///v3"])
def test_a_public_url_that_is_not_http_is_refused_by_name(tmp_path, bad):
    with pytest.raises(ValueError, match=r"^\[endpoints\] identity_public_url = .*: must be an http:// or https:// URL"):
        Config.load(state_dir=tmp_path, overrides={"endpoints": {"identity_public_url": bad}})


def test_kilonova_up_with_a_bad_public_url_says_which_option_and_exits_2(tmp_path):
    config = tmp_path / "kilonova.conf"
    config.write_text("[endpoints]\nidentity_public_url = ftp://cloud.example.com/v3\n")
    result = subprocess.run([sys.executable, "-m", "kilonova.cli", "--config", str(config), "--state-dir",
                             str(tmp_path / "state"), "up", "--clouds-yaml", str(tmp_path / "clouds.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("kilonova: configuration error: [endpoints] identity_public_url = "
                                     "'ftp://cloud.example.com/v3': must be an http:// or https:// URL, or empty")


def test_config_sample_lists_the_endpoint_options():
    sample = subprocess.run([sys.executable, "-m", "kilonova.cli", "config-sample"], capture_output=True,
                            text=True, check=True).stdout
    section = sample.split("[endpoints]\n", 1)[1].split("\n[", 1)[0]
    for service in ("identity", "compute", "placement", "image", "network"):
        assert f"#{service}_host = " in section and f"#{service}_public_url = " in section
    assert "# Services on separate hosts" in section  # the declarations' help comes along
