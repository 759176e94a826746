"""What the template's identity may do, where its secrets go, and what it tells an operator.

- least privilege: one custom role with exactly three actions, assigned only at the scopes given; the
  other roles are the documented built-in data roles, on this deployment's own resources;
- secrets: no secret parameter has a default, secrets go to Key Vault and nowhere else, no output can
  carry one, the storage key (Elastic Premium only) is read inside an App Setting only;
- alerts on failed runs and on a misconfigured CancelShutDown, as README's Failure modes asks.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.arm import calls, is_expression, parse
from tests.infra.rendering import (
    IDENTITY_ID,
    RESOURCE_GROUP_ID,
    ROOT,
    STAND_IN_ACCOUNT_KEY,
    SUBSCRIPTION_ID,
    WORKSPACE_ID,
    load_template,
    render,
    stand_in_secrets,
    variants,
)

AML_ACTIONS = [
    "Microsoft.MachineLearningServices/workspaces/read",
    "Microsoft.MachineLearningServices/workspaces/computes/read",
    "Microsoft.MachineLearningServices/workspaces/computes/stop/action",
]
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
SECRET_NAME = re.compile(r"password|secret|key", re.IGNORECASE)


def resources_of(template, resource_type):
    return [r for r in template.resources() if r.type == resource_type]


def principal_of(template):
    return template.outputs()["identityPrincipalId"]


# -- least privilege ---------------------------------------------------------------------------------


def test_the_custom_role_can_read_workspaces_and_computes_and_stop_computes_and_nothing_else():
    (role,) = resources_of(render(), "Microsoft.Authorization/roleDefinitions")
    properties = role.properties
    assert properties["type"] == "CustomRole"
    (permissions,) = properties["permissions"]
    assert permissions == {"actions": AML_ACTIONS, "notActions": [], "dataActions": [], "notDataActions": []}


def test_the_role_name_is_unique_per_deployment():
    """Custom role names are unique in a tenant: two deployments must not collide."""
    first = resources_of(render(), "Microsoft.Authorization/roleDefinitions")[0].properties["roleName"]
    second = resources_of(render(appName="aml-stop-eu"), "Microsoft.Authorization/roleDefinitions")[0]
    assert first != second.properties["roleName"]


def _role_assignments(template):
    """(scope, role definition id, principal) of every role assignment the deployment makes."""
    found = []
    for assignment in resources_of(template, "Microsoft.Authorization/roleAssignments"):
        found.append(
            (assignment.id.rsplit("/providers/Microsoft.Authorization/", 1)[0], assignment.properties)
        )
    for deployment in resources_of(template, "Microsoft.Resources/deployments"):
        inner = deployment.inner()
        for assignment in resources_of(inner, "Microsoft.Authorization/roleAssignments"):
            scope = assignment.get("scope")
            target = inner.deployment.resource_group_id if inner.deployment.resource_group else ""
            if not inner.deployment.resource_group:
                target = f"/subscriptions/{inner.deployment.subscription_id}"
            if scope:
                target += "/providers/" + scope
            found.append((target, assignment.properties))
    return found


def test_the_single_workspace_gets_the_role_on_that_workspace_only():
    template = render()
    role_name = template.variable("amlRoleName")
    aml = [(s, p) for s, p in _role_assignments(template) if p["roleDefinitionId"].endswith(role_name)]
    ((scope, properties),) = aml
    assert scope == WORKSPACE_ID
    assert properties["roleDefinitionId"] == (
        f"/subscriptions/3b1c0d7e-1111-4000-8000-000000000001/providers/Microsoft.Authorization/roleDefinitions/{role_name}"
    )
    assert properties["principalId"] == principal_of(template)
    assert properties["principalType"] == "ServicePrincipal"
    (role,) = resources_of(template, "Microsoft.Authorization/roleDefinitions")
    assert role.properties["assignableScopes"] == [
        template.deployment.resource_group_id,
        WORKSPACE_ID.split("/providers/")[0],
    ]


def test_each_scope_given_gets_the_role_in_its_own_subscription():
    template = render(variants()["many workspaces, ACS, a user-assigned identity, Elastic Premium"])
    role_name = template.variable("amlRoleName")
    aml = {s: p for s, p in _role_assignments(template) if p["roleDefinitionId"].endswith(role_name)}
    assert set(aml) == {WORKSPACE_ID, RESOURCE_GROUP_ID, SUBSCRIPTION_ID}
    for scope, properties in aml.items():
        subscription = scope.split("/")[2]
        assert properties["roleDefinitionId"] == (
            f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_name}"
        )
        assert (
            properties["principalId"]
            == render().deployment.reference(IDENTITY_ID, None, False)["principalId"]
        )
    (role,) = resources_of(template, "Microsoft.Authorization/roleDefinitions")
    assignable = role.properties["assignableScopes"]
    assert assignable == [
        template.deployment.resource_group_id,
        WORKSPACE_ID.split("/providers/")[0],
        RESOURCE_GROUP_ID,
        SUBSCRIPTION_ID,
    ]
    assert all(any(scope.startswith(a) for a in assignable) for scope in aml)


def test_many_workspaces_without_scopes_assign_nothing():
    values = variants()["many workspaces, ACS, a user-assigned identity, Elastic Premium"]
    template = render({k: v for k, v in values.items() if k != "amlRoleScopes"})
    assert resources_of(template, "Microsoft.Resources/deployments") == []


@pytest.mark.parametrize("variant", list(variants()))
def test_every_other_role_is_a_documented_data_role_on_this_deployments_own_resources(variant):
    template = render(variants()[variant])
    role_name = template.variable("amlRoleName")
    own = template.deployment.resource_group_id + "/providers/"
    others = [(s, p) for s, p in _role_assignments(template) if not p["roleDefinitionId"].endswith(role_name)]
    granted = set()
    for scope, properties in others:
        role = properties["roleDefinitionId"].rsplit("/", 1)[1]
        assert role in BUILT_IN_ROLES, properties["roleDefinitionId"]
        assert scope.startswith(own), scope
        assert properties["principalId"] == principal_of(template)
        assert properties["principalType"] == "ServicePrincipal"
        granted.add((scope.split("/providers/")[1].split("/")[1], BUILT_IN_ROLES[role]))
    assert granted == {
        ("storageAccounts", "Storage Blob Data Owner"),
        ("storageAccounts", "Storage Queue Data Contributor"),
        ("storageAccounts", "Storage Table Data Contributor"),
        ("vaults", "Key Vault Secrets User"),
        ("components", "Monitoring Metrics Publisher"),
    }


def test_the_identity_is_system_assigned_or_the_user_assigned_one_given():
    (site,) = resources_of(render(), "Microsoft.Web/sites")
    assert site.get("identity") == {"type": "SystemAssigned"}
    assert site.properties["keyVaultReferenceIdentity"] == "SystemAssigned"
    (site,) = resources_of(render(userAssignedIdentityId=IDENTITY_ID), "Microsoft.Web/sites")
    assert site.get("identity") == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY_ID: {}}}
    assert site.properties["keyVaultReferenceIdentity"] == IDENTITY_ID
    assert site.properties["functionAppConfig"]["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": IDENTITY_ID,
    }


# -- secrets -----------------------------------------------------------------------------------------


def secure_parameters(template) -> set[str]:
    return {
        name
        for name, spec in template["parameters"].items()
        if spec["type"].lower() in {"securestring", "secureobject"}
    }


def test_no_parameter_holding_a_secret_has_a_default():
    template = load_template()
    assert secure_parameters(template) == {"SENDGRID_API_KEY", "cancel_link_secret", "cancelFunctionKey"}
    for name, spec in template["parameters"].items():
        if SECRET_NAME.search(name) or name in secure_parameters(template):
            assert spec["type"].lower() in {"securestring", "secureobject"}, name
            assert "defaultValue" not in spec, name


def _paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))
    else:
        yield path, value


def test_secrets_go_to_key_vault_and_nowhere_else():
    template = load_template()
    for name in secure_parameters(template):
        uses = [
            path
            for path, value in _paths(template)
            if is_expression(value) and ("parameters", name) in calls(value)
        ]
        assert uses, name
        for path in uses:
            resource = template["resources"][path[1]]
            assert path[0] == "resources" and resource["type"] == "Microsoft.KeyVault/vaults/secrets", path
            assert path[2:] == ("properties", "value"), path


def _tainted_variables(template) -> set[str]:
    """Variables whose value holds a secure parameter or a list*() result, directly or through others."""
    variables = template["variables"]
    tainted: set[str] = set()
    while True:
        more = set()
        for name, value in variables.items():
            found = calls(value)
            if any(f == "parameters" and a in secure_parameters(template) for f, a in found) or any(
                f.startswith("list") for f, _ in found
            ):
                more.add(name)
            if any(f == "variables" and a in tainted for f, a in found):
                more.add(name)
        if more <= tainted:
            return tainted
        tainted |= more


def test_no_output_can_carry_a_secret():
    template = load_template()
    outputs = template["outputs"]
    found = calls(outputs)
    assert not any(f.startswith("list") for f, _ in found)
    assert not {a for f, a in found if f == "parameters"} & secure_parameters(template)
    assert not {a for f, a in found if f == "variables"} & _tainted_variables(template)
    text = json.dumps(outputs)
    for word in ("SharedAccessSignature", "AccountKey", "listKeys", "listSecrets", "secrets/", "sig="):
        assert word not in text
    for variant in variants().values():
        rendered = json.dumps(render(variant).outputs())
        for secret in [*stand_in_secrets().values(), STAND_IN_ACCOUNT_KEY]:
            assert not secret or secret not in rendered


def test_the_storage_key_is_read_only_inside_app_settings_and_only_for_elastic_premium():
    template = load_template()
    places = []
    for path, value in _paths(template):
        if is_expression(value) and any(f.startswith("list") for f, _ in calls(value)):
            places.append((template["resources"][path[1]]["type"], path[2:]))
    assert places == [
        ("Microsoft.Web/sites", ("properties", "siteConfig", "appSettings")),
        ("Microsoft.Web/sites/config", ("properties",)),
    ]
    for sku, shared_key in {"FC1": False, "B1": False, "P1v3": False, "EP1": True}.items():
        rendered = render(planSku=sku)
        (storage,) = resources_of(rendered, "Microsoft.Storage/storageAccounts")
        assert storage.properties["allowSharedKeyAccess"] is shared_key, sku
        text = json.dumps([r.properties for r in rendered.resources() if r.type.startswith("Microsoft.Web/")])
        assert (STAND_IN_ACCOUNT_KEY in text) is shared_key, sku


def test_the_storage_account_is_locked_down():
    (storage,) = resources_of(render(), "Microsoft.Storage/storageAccounts")
    properties = storage.properties
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["allowBlobPublicAccess"] is False
    assert properties["allowSharedKeyAccess"] is False
    (container,) = resources_of(render(), "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.properties == {"publicAccess": "None"}


def test_the_vault_uses_rbac_and_keeps_deleted_secrets():
    (vault,) = resources_of(render(), "Microsoft.KeyVault/vaults")
    properties = vault.properties
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["tenantId"] == render().deployment.tenant_id


# -- the Function App --------------------------------------------------------------------------------


def test_flex_consumption_runs_python_from_the_deployment_container():
    template = render()
    (plan,) = resources_of(template, "Microsoft.Web/serverfarms")
    assert plan.get("sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.properties["reserved"] is True  # Linux
    (site,) = resources_of(template, "Microsoft.Web/sites")
    assert site.get("kind") == "functionapp,linux"
    assert site.properties["httpsOnly"] is True
    config = site.properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {"maximumInstanceCount": 40, "instanceMemoryMB": 2048}
    (container,) = resources_of(template, "Microsoft.Storage/storageAccounts/blobServices/containers")
    storage, _, name = container.name.split("/")
    assert config["deployment"]["storage"] == {
        "type": "blobContainer",
        "value": f"https://{storage}.blob.core.windows.net/{name}",
        "authentication": {"type": "SystemAssignedIdentity"},
    }
    # Not allowed on Flex: null there (not set), as functionAppConfig is on the other plans.
    set_on_flex = {k for k, v in site.properties["siteConfig"].items() if v is not None}
    assert set_on_flex.isdisjoint({"linuxFxVersion", "alwaysOn", "appSettings"})


@pytest.mark.parametrize(
    ("sku", "tier", "kind"), [("EP1", "ElasticPremium", "elastic"), ("B1", "Basic", "linux")]
)
def test_another_plan_runs_python_from_its_site_config(sku, tier, kind):
    template = render(planSku=sku)
    (plan,) = resources_of(template, "Microsoft.Web/serverfarms")
    assert (plan.get("sku"), plan.get("kind")) == ({"name": sku, "tier": tier}, kind)
    (site,) = resources_of(template, "Microsoft.Web/sites")
    assert site.properties["functionAppConfig"] is None
    config = site.properties["siteConfig"]
    assert config["linuxFxVersion"] == "Python|3.11"
    assert config["alwaysOn"] is (tier != "ElasticPremium")  # Dedicated plans need it for timers
    settings = {s["name"]: s["value"] for s in config["appSettings"]}
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert ("WEBSITE_CONTENTSHARE" in settings) is (tier == "ElasticPremium")


# -- alerts ------------------------------------------------------------------------------------------


def _readme_misconfigured_query() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```kusto\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [b for b in blocks if "CancelShutDown is misconfigured" in b]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_alerts_mail_the_operators_on_failed_runs_and_on_a_misconfigured_cancel_page():
    template = render()
    (group,) = resources_of(template, "Microsoft.Insights/actionGroups")
    assert [r["emailAddress"] for r in group.properties["emailReceivers"]] == ["ml-platform@contoso.com"]
    app = template.parameter("appName")
    rules = {
        r.name.removeprefix(f"{app}-"): r
        for r in resources_of(template, "Microsoft.Insights/scheduledQueryRules")
    }
    assert set(rules) == {"failed-runs", "cancel-misconfigured"}
    app_insights = template.variable("appInsightsId")
    for rule in rules.values():
        properties = rule.properties
        assert properties["scopes"] == [app_insights]
        assert properties["actions"]["actionGroups"] == [template.variable("actionGroupId")]
        assert properties["enabled"] is True
        (criterion,) = properties["criteria"]["allOf"]
        assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == (
            "GreaterThan",
            0,
            "Count",
        )
    failed = rules["failed-runs"].properties["criteria"]["allOf"][0]["query"]
    assert failed.startswith("requests\n")
    assert 'where success == false and name in ("MailSender", "ComputeShutdown")' in failed
    misconfigured = rules["cancel-misconfigured"].properties["criteria"]["allOf"][0]["query"]
    for line in _readme_misconfigured_query():  # the README's query, word for word
        assert line in misconfigured


def test_the_alert_queries_name_the_functions_that_exist():
    for function in ("MailSender", "ComputeShutdown", "CancelShutDown"):
        assert (ROOT / function / "function.json").is_file()
    bindings = json.loads((ROOT / "CancelShutDown" / "function.json").read_text())["bindings"]
    assert bindings[0]["authLevel"] == "function"  # why the mailed links carry a function key


def test_every_expression_in_the_alert_queries_is_plain_text():
    """KQL goes to Azure as written: no part of it may be mistaken for an ARM expression."""
    for query in load_template()["variables"]["alertQueries"].values():
        assert not is_expression(query)
        assert "[" not in query


def test_parse_rejects_what_arm_would_reject():
    for broken in ("parameters('x'", "concat('a',)", "variables", "'unterminated"):
        with pytest.raises(SyntaxError):
            parse(broken)
