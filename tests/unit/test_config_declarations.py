"""The declaration layer: every option typed and checked at load, one-line errors, old locations, the sample."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from kilonova.config import Config, ConfigError
from kilonova.config.options import DEFAULTS, MOVED
from kilonova.config.sample import sample
from kilonova.config.types import Opt

ROOT = Path(__file__).resolve().parents[2]


def load(tmp_path, text: str) -> Config:
    path = tmp_path / "kilonova.conf"
    path.write_text(text)
    return Config.load(path, state_dir=tmp_path / "state")


@pytest.mark.parametrize("text, message", [
    ("[DEFAULT]\nrpc_response_timeout = soon\n",
     "[DEFAULT] rpc_response_timeout = 'soon': must be an integer >= 1"),
    ("[ports]\ncompute = 70000\n", "[ports] compute = '70000': must be an integer from 0 to 65535"),
    ("[DEFAULT]\ncpu_allocation_ratio = -2\n", "[DEFAULT] cpu_allocation_ratio = '-2': must be a number >= 0.0"),
    ("[DEFAULT]\ndebug = maybe\n", "[DEFAULT] debug = 'maybe': must be true or false"),
    ("[DEFAULT]\nlog_format = xml\n", "[DEFAULT] log_format = 'xml': must be one of text, json"),
    ("[upgrade_levels]\ncompute = newest\n",
     "[upgrade_levels] compute = 'newest': must be auto or a version X.Y"),
    ("[DEFAULT]\ntransport_url = kafka://x\n",
     "[DEFAULT] transport_url = (secret): must be inproc:// or rabbit://user:password@host:port/vhost"),
    ("[comptue]\nforce_config_drive = true\n", "[comptue]: unknown section (did you mean compute?)"),
    ("[quota]\ninstance = 5\n", "[quota] instance: unknown option (did you mean instances?)"),
    ("[quota]\nwidgets = 5\n", "[quota] widgets: unknown option"),
    ("[pci]\nalias = {name: gpu}\n", "[pci] alias = '{name: gpu}': must be JSON: a {...} alias or a list of them"),
    ("[volume]\nnbd_ports = 11000-10000\n", "[volume] nbd_ports = '11000-10000': must be a port or a range LOW-HIGH"),
    ("[default]\ndebug = true\n", "[default]: unknown section (did you mean DEFAULT?)"),
    ("[compute]\nforce_config_drive = sometimes\n",
     "[compute] force_config_drive = 'sometimes': must be true or false"),   # an old location names itself
    ("[DEFAULT]\nrpc_response_timeout = 1\nrpc_response_timeout = 2\n", "option 'rpc_response_timeout' in section "
     "'DEFAULT' already exists"),
    ("rpc_response_timeout = 1\n", "File contains no section headers."),
])
def test_a_wrong_file_is_refused_in_one_line_naming_section_option_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, text)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_values_are_read_typed_and_as_text(tmp_path):
    conf = load(tmp_path, "[DEFAULT]\ndebug = yes\ncpu_allocation_ratio = 2.5\n[quota]\ncores = -1\n"
                          "[filter_scheduler]\nenabled_filters = ComputeFilter, JsonFilter\n")
    assert conf.getbool("DEFAULT", "debug") is True and conf.value("DEFAULT", "debug") is True
    assert conf.getfloat("DEFAULT", "cpu_allocation_ratio") == 2.5 and conf.getint("quota", "cores") == -1
    assert conf.value("filter_scheduler", "enabled_filters") == ["ComputeFilter", "JsonFilter"]
    assert conf.get("image", "filesystem_store_datadir") == str(tmp_path / "state" / "images")
    assert conf.is_set("quota", "cores") and not conf.is_set("quota", "ram")
    with pytest.raises(ConfigError, match="must be an integer >= -1"):
        conf.set("quota", "cores", "-5")  # set at run time: checked the same way


def test_an_old_location_is_still_read_with_a_warning_and_the_new_one_wins(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "kilonova.config")
    conf = load(tmp_path, "[compute]\nforce_config_drive = true\nbuild_timeout = 42\n"
                          "[libvirt]\nforce_raw_images = false\n[filter_scheduler]\nmax_attempts = 5\n")
    assert conf.getbool("DEFAULT", "force_config_drive") and conf.getint("DEFAULT", "instance_build_timeout") == 42
    assert not conf.getbool("DEFAULT", "force_raw_images") and conf.getint("scheduler", "max_attempts") == 5
    assert conf.getint("compute", "build_timeout") == 42  # a reader still using the old name gets the value
    assert "[compute] force_config_drive is deprecated: set [DEFAULT] force_config_drive instead" in caplog.text
    both = load(tmp_path, "[DEFAULT]\nforce_config_drive = false\n[compute]\nforce_config_drive = true\n")
    assert not both.getbool("DEFAULT", "force_config_drive")
    assert "[compute] force_config_drive is deprecated and ignored: [DEFAULT] force_config_drive is set" \
        in caplog.text


def test_every_default_passes_its_own_check_and_every_option_is_documented():
    for section, options in DEFAULTS.items():
        for key, opt in options.items():
            assert isinstance(opt, Opt) and opt.help, f"[{section}] {key} needs a declaration with help"
            opt.parse(opt.text(opt.default))
    for old, new in MOVED.items():
        assert new[1] in DEFAULTS[new[0]] and old[1] not in DEFAULTS.get(old[0], {}), old


def test_every_option_the_code_reads_is_declared():
    reads = re.compile(r"""\.(?:get|getint|getfloat|getbool|getlist|value|is_set)\(\s*"([\w-]+)",\s*"([\w-]+)"\)""")
    missing = []
    for path in (ROOT / "kilonova").rglob("*.py"):
        for section, key in reads.findall(path.read_text()):
            if section in DEFAULTS and key not in DEFAULTS[section] and (section, key) not in MOVED:
                missing.append(f"{path.relative_to(ROOT)}: [{section}] {key}")
    assert not missing


def test_the_sample_shows_help_type_choices_old_locations_and_defaults():
    text = sample()
    assert re.search(r"# text, or json: one JSON object a line\.[^[]*one of\s(# )?text, json\)\n#log_format = text", text)
    assert "# Deprecated location: [compute] force_config_drive\n#force_config_drive = false" in text
    assert "(port value: an integer from 0 to 65535)\n#compute = 8774" in text
    sections = re.findall(r"^\[([\w-]+)\]$", text, re.M)
    assert sections == list(DEFAULTS)
