"""infra/azuredeploy.json is a well-formed ARM deployment template.

Validated against Microsoft's deployment-template schema (tests/infra/deploymentTemplate.json, see
NOTICE.md). That schema `$ref`s files on schema.management.azure.com, which a test cannot fetch: its one
reference to the expression syntax (`common/definitions.json#/definitions/expression`) is replaced by
that definition, copied below; every other remote reference (the per-provider resource schemas) by the
schema's own `ARMResourceBase`, the common part each of them builds on (name and type required, condition,
apiVersion, dependsOn), and each `oneOf` that offered one becomes an `anyOf` (stand-ins for different
providers cannot be mutually exclusive). So the schema checks the template's top level, parameters,
outputs, loops and each resource's common part; the structural checks after it check each resource.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from tests.infra.arm import Resource, Template, calls, is_expression, parse
from tests.infra.rendering import load_template, render, variants

SCHEMA_PATH = Path(__file__).with_name("deploymentTemplate.json")
REMOTE = "https://schema.management.azure.com/"
EXPRESSION_REF = "https://schema.management.azure.com/schemas/common/definitions.json#/definitions/expression"
# Copied from schemas/common/definitions.json of the same repository and commit (MIT, see NOTICE.md).
EXPRESSION = {"type": "string", "pattern": "^\\[([^\\[].*)?\\]$"}

# Resource types that live in a region (the others are children, extensions or deployments).
TRACKED = {
    "Microsoft.Storage/storageAccounts",
    "Microsoft.OperationalInsights/workspaces",
    "Microsoft.Insights/components",
    "Microsoft.KeyVault/vaults",
    "Microsoft.Web/serverfarms",
    "Microsoft.Web/sites",
    "Microsoft.Insights/actionGroups",
    "Microsoft.Insights/scheduledQueryRules",
}


def _permissive(node) -> bool:
    return (
        isinstance(node, dict) and node.get("$ref", "").startswith(REMOTE) and node["$ref"] != EXPRESSION_REF
    )


def offline(node):
    """The schema with its remote references replaced as the module docstring says."""
    if isinstance(node, list):
        return [offline(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("$ref") == EXPRESSION_REF:
        return dict(EXPRESSION)
    if _permissive(node):
        return {"$ref": "#/definitions/ARMResourceBase", "description": f"stand-in for {node['$ref']}"}
    result = {key: offline(value) for key, value in node.items()}
    if "oneOf" in node and any(_permissive(branch) or _has_permissive(branch) for branch in node["oneOf"]):
        result["anyOf"] = result.pop("oneOf")
    return result


def _has_permissive(node) -> bool:
    if _permissive(node):
        return True
    if isinstance(node, dict):
        return any(_has_permissive(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_permissive(v) for v in node)
    return False


@pytest.fixture(scope="module")
def validator():
    schema = offline(json.loads(SCHEMA_PATH.read_text()))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def nested_templates(template):
    for resource in template["resources"]:
        inner = resource.get("properties", {})
        if isinstance(inner, dict) and "template" in inner:
            yield resource, inner["template"]


def all_resource_specs(template):
    yield from template["resources"]
    for _, inner in nested_templates(template):
        yield from inner["resources"]


def test_the_vendored_schema_is_the_deployment_template_schema():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["id"] == "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    assert load_template()["$schema"] == schema["id"]


def test_the_offline_schema_still_rejects_what_the_real_one_rejects(validator):
    good = {"$schema": "x", "contentVersion": "1.0.0.0", "resources": []}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "unknown": 1})  # no other top-level keys
    assert not validator.is_valid({**good, "contentVersion": "1.0"})
    assert not validator.is_valid({**good, "parameters": {"p": {"type": "text"}}})
    assert not validator.is_valid({**good, "resources": [{"type": "Microsoft.Web/sites"}]})  # no name
    assert not validator.is_valid({**good, "resources": [{"name": "x", "type": "t", "condition": "maybe"}]})
    assert not validator.is_valid({**good, "outputs": {"o": {"value": 1}}})  # no type


def test_the_template_is_valid_against_the_schema(validator):
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(load_template())]
    assert errors == []


def test_each_nested_template_is_valid_against_the_schema(validator):
    inner = list(nested_templates(load_template()))
    assert len(inner) == 2
    for _, template in inner:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(template)]
        assert errors == []


def test_every_expression_parses():
    template = load_template()
    expressions = [s for s in _strings(template) if is_expression(s)]
    assert len(expressions) > 100
    for text in expressions:
        parse(text[1:-1])


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_each_resource_has_a_type_a_stable_api_version_and_a_name():
    for spec in all_resource_specs(load_template()):
        assert re.fullmatch(r"Microsoft\.[A-Za-z]+(/[A-Za-z]+)+", spec["type"]), spec["type"]
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", spec["apiVersion"]), (spec["type"], spec["apiVersion"])
        assert spec["name"], spec["type"]


def test_each_location_is_where_it_belongs():
    template = load_template()
    for spec in template["resources"]:
        if spec["type"] == "Microsoft.Insights/actionGroups":
            assert spec["location"] == "Global"  # action groups are global resources
        elif spec["type"] in TRACKED:
            assert spec["location"] == "[parameters('location')]", spec["type"]
        elif spec["type"] == "Microsoft.Resources/deployments" and "resourceGroup" not in spec:
            assert spec["location"] == "[parameters('location')]"  # a subscription deployment's metadata
        else:
            assert "location" not in spec, spec["type"]


@pytest.mark.parametrize("variant", list(variants()))
def test_each_deployed_resource_name_fits_its_type(variant):
    for resource in render(variants()[variant]).resources():
        segments = resource.type.split("/")[1:]
        assert len(resource.name.split("/")) == len(segments), (resource.type, resource.name)
        if resource.type == "Microsoft.Storage/storageAccounts":
            assert re.fullmatch(r"[a-z0-9]{3,24}", resource.name)
        if resource.type == "Microsoft.KeyVault/vaults":
            assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", resource.name)
        if resource.type == "Microsoft.Storage/storageAccounts/blobServices/containers":
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]{2,62}", resource.name.split("/")[-1])
        if resource.type == "Microsoft.Resources/deployments":
            assert len(resource.name) <= 64


@pytest.mark.parametrize("variant", list(variants()))
def test_every_dependency_is_a_resource_or_a_loop_of_the_template(variant):
    template = render(variants()[variant])
    known = {spec["copy"]["name"] for spec in template.template["resources"] if "copy" in spec}
    for spec in template.template["resources"]:
        if "copy" not in spec:
            known.add(Resource(template, spec, {}).id.lower())
    for resource in template.resources():
        for dependency in resource.get("dependsOn", []):
            assert dependency.lower() in known or dependency in known, (resource.type, dependency)


def _declared_and_used(template: dict) -> tuple[set, set, set, set]:
    used = calls({k: v for k, v in template.items() if k != "parameters"})
    used |= calls({name: spec.get("defaultValue") for name, spec in template.get("parameters", {}).items()})
    parameters = {arg for name, arg in used if name == "parameters"}
    variables = {arg for name, arg in used if name == "variables"}
    declared_variables = set(template.get("variables", {})) - {"copy"}
    declared_variables |= {loop["name"] for loop in template.get("variables", {}).get("copy", [])}
    # What the nested templates use is theirs (their expressions are evaluated inside, scope inner).
    return set(template.get("parameters", {})), parameters, declared_variables, variables


def _outer_only(template: dict) -> dict:
    outer = json.loads(json.dumps(template))
    for resource, _ in nested_templates(outer):
        resource["properties"]["template"] = {}
    return outer


def test_every_parameter_and_variable_is_declared_and_used():
    template = load_template()
    declared_p, used_p, declared_v, used_v = _declared_and_used(_outer_only(template))
    assert used_p - declared_p == set()
    assert declared_p - used_p == set()
    assert used_v - declared_v == set()
    assert declared_v - used_v == set()
    for _, inner in nested_templates(template):
        declared_p, used_p, declared_v, used_v = _declared_and_used(inner)
        assert (used_p, used_v) == (declared_p, declared_v)


@pytest.mark.parametrize("variant", list(variants()))
def test_everything_the_template_deploys_evaluates(variant):
    """No expression of a deployed resource or output is beyond the evaluator (or fails in it)."""
    template: Template = render(variants()[variant])
    for resource in template.resources():
        for key in resource.spec:
            if key not in {"copy", "condition"}:
                resource.get(key)
    template.outputs()
