"""``kilonova manage policy list``: every service's rules in force, overrides marked, unknown names flagged."""
from __future__ import annotations

import yaml

from kilonova.cli import main
from kilonova.config import Config
from kilonova.manage import policy_list


def test_the_listing_is_yaml_with_defaults_and_overrides(tmp_path):
    (tmp_path / "policy.yaml").write_text('"os_compute_api:servers:create": "!"\n'
                                          '"placement:traits:list": "role:reader"\n'
                                          '"os_compute_api:os-hypervisor:list": "@"\n')
    conf = Config.load(state_dir=tmp_path)
    text = policy_list.render(conf, ["compute", "identity", "placement"])
    rules = yaml.safe_load(text)
    assert rules["os_compute_api:servers:create"] == "!"
    assert rules["os_compute_api:servers:delete"] == "rule:project_member_or_admin"
    assert rules["os_compute_api:os-migrate-server:migrate"] == "rule:project_manager_or_admin"
    assert rules["identity:list_users"] == "role:admin"
    assert rules["placement:traits:list"] == "role:reader"
    assert '"os_compute_api:servers:create": "!"  # overridden; default: rule:project_member_or_admin' in text
    assert "no service has these rules" in text and '"os_compute_api:os-hypervisor:list": "@"' in text
    only = policy_list.render(conf, ["placement"], overridden_only=True)
    assert yaml.safe_load(only) == {"placement:traits:list": "role:reader", "os_compute_api:os-hypervisor:list": "@"}


def test_a_malformed_file_is_a_configuration_error(tmp_path, capsys):
    (tmp_path / "policy.yaml").write_text('"os_compute_api:servers:create": "role:admin or"\n')
    try:
        main(["--state-dir", str(tmp_path), "manage", "policy", "list"])
    except SystemExit as exit:
        assert exit.code == 2
    err = capsys.readouterr().err
    assert err.strip() == ("kilonova: configuration error: rule 'os_compute_api:servers:create': "
                           "cannot parse check string 'role:admin or'")
