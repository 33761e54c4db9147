"""Identity through the real `openstack` CLI: tokens, catalog, projects, users, admin-only listing."""
from __future__ import annotations

import json


def test_token_issue_is_scoped_to_the_users_project(cloud):
    admin = cloud.openstack("token", "issue", fmt_json=True)
    demo = cloud.openstack("token", "issue", cloud="kilonova-demo", fmt_json=True)
    assert admin["id"] and demo["id"] and admin["id"] != demo["id"]
    assert admin["project_id"] != demo["project_id"]
    projects = {p["Name"]: p["ID"] for p in cloud.openstack("project", "list", fmt_json=True)}
    assert admin["project_id"] == projects["admin"]
    assert demo["project_id"] == projects["demo"]


def test_catalog_lists_every_service_with_three_interfaces(cloud):
    catalog = cloud.openstack("catalog", "list", fmt_json=True)
    by_type = {row["Type"]: row for row in catalog}
    assert set(by_type) >= {"identity", "compute", "placement", "image", "network"}
    for service_type, url in cloud.urls.items():
        endpoints = json.dumps(by_type[service_type]["Endpoints"])
        assert url in endpoints, endpoints
        for interface in ("public", "internal", "admin"):
            assert interface in endpoints
        assert "RegionOne" in endpoints


def test_project_and_user_lists_are_admin_only(cloud):
    assert {"admin", "demo", "service"} <= {p["Name"] for p in cloud.openstack("project", "list", fmt_json=True)}
    assert {"admin", "demo"} <= {u["Name"] for u in cloud.openstack("user", "list", fmt_json=True)}
    denied = cloud.openstack("user", "list", cloud="kilonova-demo", check=False)
    assert denied.returncode != 0
    assert "403" in denied.stderr or "not authorized" in denied.stderr


def test_created_user_can_log_in_until_deleted(cloud):
    cloud.openstack("project", "create", "--domain", "default", "cli-project")
    cloud.openstack("user", "create", "--domain", "default", "--project", "cli-project",
                    "--password", "s3cret-pass", "cli-user")
    cloud.openstack("role", "add", "--project", "cli-project", "--user", "cli-user", "member")
    try:
        env_auth = ["--os-username", "cli-user", "--os-password", "s3cret-pass",
                    "--os-project-name", "cli-project"]
        token = cloud.openstack(*env_auth, "token", "issue", fmt_json=True)
        assert token["project_id"]
        wrong = cloud.openstack("--os-username", "cli-user", "--os-password", "wrong",
                                "--os-project-name", "cli-project", "token", "issue", check=False)
        assert wrong.returncode != 0 and "401" in wrong.stderr
        assignments = cloud.openstack("role", "assignment", "list", "--user", "cli-user", "--names",
                                      fmt_json=True)
        assert [a["Role"] for a in assignments] == ["member"]
    finally:
        cloud.openstack("user", "delete", "cli-user")
        cloud.openstack("project", "delete", "cli-project")
    gone = cloud.openstack("--os-username", "cli-user", "--os-password", "s3cret-pass",
                           "--os-project-name", "cli-project", "token", "issue", check=False)
    assert gone.returncode != 0
