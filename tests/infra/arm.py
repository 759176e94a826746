"""A small evaluator for the ARM template expressions infra/azuredeploy.json uses.

Enough of the template language to render what the template would send, without Azure: parameters()
(with defaults and their constraints), variables() (including `copy` variables), the string, array,
object, logical and comparison functions the template calls, resourceId() and friends, environment(),
resourceGroup(), subscription(), and resource loops (`copy`, `condition`). `if()` is lazy, as in ARM.
reference() and list*() are answered by a stand-in the caller passes, the way the platform would answer
them at deployment time. An expression this module does not know is an error, so the template stays
simple enough to be checked here.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

# -- parsing -------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[().,\[\]]))"
)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Member:
    target: Any
    name: str


@dataclass(frozen=True)
class Index:
    target: Any
    index: Any


def is_expression(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("[")
        and value.endswith("]")
        and not value.startswith("[[")
    )


def parse(text: str):
    """Parse the inside of `[...]` into a small tree."""
    tokens = [*_tokenize(text), ("end", None)]
    node, position = _parse_expr(tokens, 0)
    if tokens[position][0] != "end":
        raise SyntaxError(f"unexpected {tokens[position]!r} in {text!r}")
    return node


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise SyntaxError(f"cannot read {text[position:]!r}")
        position = match.end()
        if match["str"] is not None:
            tokens.append(("str", match["str"][1:-1].replace("''", "'")))
        elif match["num"] is not None:
            tokens.append(("num", int(match["num"])))
        elif match["name"] is not None:
            tokens.append(("name", match["name"]))
        else:
            tokens.append(("punct", match["punct"]))
    return tokens


def _parse_expr(tokens, position):
    kind, value = tokens[position]
    if kind == "str" or kind == "num":
        node, position = Literal(value), position + 1
    elif kind == "name":
        if tokens[position + 1] != ("punct", "("):
            raise SyntaxError(f"{value} is not a function call")
        position += 2
        args = []
        if tokens[position] != ("punct", ")"):
            while True:
                arg, position = _parse_expr(tokens, position)
                args.append(arg)
                if tokens[position] == ("punct", ","):
                    position += 1
                    continue
                break
        if tokens[position] != ("punct", ")"):
            raise SyntaxError(f"expected ) after the arguments of {value}")
        node, position = Call(value, tuple(args)), position + 1
    else:
        raise SyntaxError(f"unexpected {value!r}" if kind != "end" else "unexpected end of the expression")
    while tokens[position] in {("punct", "."), ("punct", "[")}:
        if tokens[position] == ("punct", "."):
            node, position = Member(node, tokens[position + 1][1]), position + 2
        else:
            index, position = _parse_expr(tokens, position + 1)
            if tokens[position] != ("punct", "]"):
                raise SyntaxError("expected ]")
            node, position = Index(node, index), position + 1
    return node, position


def calls(value: Any) -> set[tuple[str, str | None]]:
    """Every function call in a template value: (function name, first argument when it is a literal)."""
    found: set[tuple[str, str | None]] = set()

    def walk(node):
        if isinstance(node, Call):
            first = node.args[0].value if node.args and isinstance(node.args[0], Literal) else None
            found.add((node.name.lower(), first))
            for arg in node.args:
                walk(arg)
        elif isinstance(node, Member):
            walk(node.target)
        elif isinstance(node, Index):
            walk(node.target)
            walk(node.index)

    for text in strings(value):
        if is_expression(text):
            walk(parse(text[1:-1]))
    return found


def strings(value: Any):
    """Every string inside a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# -- evaluating ----------------------------------------------------------------------------------------


class Unresolvable(Exception):
    """The template asks for something the evaluator does not know (or not in this position)."""


def _get(obj: Any, name: str) -> Any:
    """Property access, case-insensitive as in ARM."""
    if not isinstance(obj, Mapping):
        raise Unresolvable(f"no property {name} on {obj!r}")
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    raise Unresolvable(f"no property {name} in {sorted(obj)}")


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def unique_string(*parts: str) -> str:
    """A stand-in for uniqueString(): deterministic, 13 lowercase characters (not ARM's own hash)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[b % 32] for b in digest[:13])


def stand_in_guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))


def _type_and_names(resource_type: str, names: list[str]) -> str:
    namespace, *types = resource_type.split("/")
    if len(types) != len(names):
        raise Unresolvable(f"{resource_type} needs {len(types)} name(s), got {names}")
    return namespace + "".join(f"/{t}/{n}" for t, n in zip(types, names, strict=True))


@dataclass
class Deployment:
    """Where a template is deployed, and who answers reference() and list*()."""

    subscription_id: str = "5f0c2d9a-2222-4000-8000-000000000002"
    resource_group: str = "rg-aml-autoshutdown"
    location: str = "westeurope"
    tenant_id: str = "72f988bf-0000-4000-8000-000000000003"
    reference: Callable[[str, str | None, bool], Any] | None = None
    list_keys: Callable[[str, str], Any] | None = None

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"


@dataclass
class Template:
    """A template with its parameter values, evaluated on demand."""

    template: Mapping[str, Any]
    values: Mapping[str, Any]
    deployment: Deployment = field(default_factory=Deployment)

    def __post_init__(self):
        self._parameters: dict[str, Any] = {}
        self._variables: dict[str, Any] = {}
        declared = self.template.get("parameters", {})
        unknown = set(self.values) - set(declared)
        if unknown:
            raise Unresolvable(f"values for parameters the template does not declare: {sorted(unknown)}")

    # parameters and variables

    def parameter(self, name: str) -> Any:
        if name in self._parameters:
            return self._parameters[name]
        spec = self.template.get("parameters", {}).get(name)
        if spec is None:
            raise Unresolvable(f"no parameter {name}")
        if name in self.values:
            value = self.values[name]
        elif "defaultValue" in spec:
            value = self.evaluate(spec["defaultValue"])
        else:
            raise Unresolvable(f"parameter {name} has no value and no default")
        _check_parameter(name, spec, value)
        self._parameters[name] = value
        return value

    def variable(self, name: str) -> Any:
        if name in self._variables:
            return self._variables[name]
        variables = self.template.get("variables", {})
        loops = {loop["name"]: loop for loop in variables.get("copy", [])}
        if name in loops:
            loop = loops[name]
            count = self.evaluate(loop["count"])
            value = [self.evaluate(loop["input"], loops={name: i}) for i in range(count)]
        elif name in variables and name != "copy":
            value = self.evaluate(variables[name])
        else:
            raise Unresolvable(f"no variable {name}")
        self._variables[name] = value
        return value

    # values

    def evaluate(self, value: Any, loops: Mapping[str | None, int] | None = None) -> Any:
        """A template value with every expression in it evaluated (keys included)."""
        loops = loops or {}
        if is_expression(value):
            return self._eval(parse(value[1:-1]), loops)
        if isinstance(value, str) and value.startswith("[["):
            return value[1:]
        if isinstance(value, Mapping):
            return {self.evaluate(k, loops): self.evaluate(v, loops) for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate(item, loops) for item in value]
        return value

    def _eval(self, node, loops):
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Member):
            return _get(self._eval(node.target, loops), node.name)
        if isinstance(node, Index):
            target, index = self._eval(node.target, loops), self._eval(node.index, loops)
            if isinstance(target, list):
                if not isinstance(index, int) or not -len(target) <= index < len(target):
                    raise Unresolvable(f"index {index!r} out of range for a list of {len(target)}")
                return target[index]
            return _get(target, index)
        name = node.name.lower()
        if name == "if":
            condition, yes, no = node.args
            return self._eval(yes if self._truth(self._eval(condition, loops)) else no, loops)
        if name == "copyindex":
            args = [self._eval(a, loops) for a in node.args]
            loop = next((a for a in args if isinstance(a, str)), None)
            offset = next((a for a in args if isinstance(a, int)), 0)
            if loop not in loops:
                raise Unresolvable(f"copyIndex({loop or ''}) outside its loop")
            return loops[loop] + offset
        args = [self._eval(a, loops) for a in node.args]
        function = _FUNCTIONS.get(name)
        if function is None:
            raise Unresolvable(f"the evaluator does not know {node.name}()")
        return function(self, *args)

    @staticmethod
    def _truth(value) -> bool:
        if not isinstance(value, bool):
            raise Unresolvable(f"if() needs a bool, got {value!r}")
        return value

    # resources

    def resources(self) -> list[Resource]:
        """Every resource the template would deploy with these values: loops expanded, conditions applied."""
        found = []
        for spec in self.template.get("resources", []):
            loop = spec.get("copy")
            indexes = range(self.evaluate(loop["count"])) if loop else [None]
            for i in indexes:
                loops = {None: i, loop["name"]: i} if loop else {}
                if self.evaluate(spec.get("condition", True), loops):
                    found.append(Resource(self, spec, loops))
        return found

    def outputs(self) -> dict[str, Any]:
        return {name: self.evaluate(spec["value"]) for name, spec in self.template.get("outputs", {}).items()}


@dataclass
class Resource:
    template: Template
    spec: Mapping[str, Any]
    loops: Mapping[str | None, int]

    @property
    def type(self) -> str:
        return self.spec["type"]

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.spec:
            return default
        if key == "properties" and self.nested is not None:
            # A nested template with scope inner is evaluated inside its own deployment (see `inner`).
            outer = {k: v for k, v in self.spec[key].items() if k != "template"}
            return {**self.template.evaluate(outer, self.loops), "template": self.nested}
        return self.template.evaluate(self.spec[key], self.loops)

    @property
    def nested(self) -> Mapping[str, Any] | None:
        properties = self.spec.get("properties")
        if self.type != "Microsoft.Resources/deployments" or not isinstance(properties, Mapping):
            return None
        if properties.get("expressionEvaluationOptions", {}).get("scope", "").lower() != "inner":
            raise Unresolvable("nested templates are only evaluated with scope inner")
        return properties["template"]

    def inner(self) -> Template:
        """The nested template, with the values the outer template passes and its own target scope."""
        properties = self.properties
        values = {name: entry["value"] for name, entry in properties.get("parameters", {}).items()}
        outer = self.template.deployment
        deployment = Deployment(
            subscription_id=self.get("subscriptionId", outer.subscription_id),
            resource_group=self.get(
                "resourceGroup", outer.resource_group if "location" not in self.spec else ""
            ),
            location=outer.location,
            tenant_id=outer.tenant_id,
        )
        return Template(properties["template"], values, deployment)

    @property
    def name(self) -> str:
        return self.get("name")

    @property
    def properties(self) -> Any:
        return self.get("properties", {})

    @property
    def id(self) -> str:
        """The resource id, in the deployment's resource group (or the scope it names)."""
        names = self.name.split("/")
        scope = self.get("scope")
        if scope:
            parent_type = "/".join(scope.split("/")[:2])
            parent = _resource_id(self.template, [parent_type, *scope.split("/")[2:]])
            return f"{parent}/providers/{_type_and_names(self.type, names)}"
        return _resource_id(self.template, [self.type, *names])


def _check_parameter(name: str, spec: Mapping[str, Any], value: Any) -> None:
    kinds = {
        "string": str,
        "securestring": str,
        "int": int,
        "bool": bool,
        "object": dict,
        "secureobject": dict,
        "array": list,
    }
    kind = kinds[spec["type"].lower()]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Unresolvable(f"parameter {name} must be {spec['type']}, got {value!r}")
    if "allowedValues" in spec and value not in spec["allowedValues"]:
        raise Unresolvable(f"parameter {name}: {value!r} is not one of {spec['allowedValues']}")
    if ("minValue" in spec and value < spec["minValue"]) or ("maxValue" in spec and value > spec["maxValue"]):
        raise Unresolvable(f"parameter {name}: {value!r} is out of range")
    if "minLength" in spec and len(value) < spec["minLength"]:
        raise Unresolvable(f"parameter {name} is shorter than {spec['minLength']}")
    if "maxLength" in spec and len(value) > spec["maxLength"]:
        raise Unresolvable(f"parameter {name} is longer than {spec['maxLength']}")


def _resource_id(t: Template, args: list[str]) -> str:
    position = next((i for i, a in enumerate(args) if isinstance(a, str) and "/" in a), None)
    if position is None or position > 2:
        raise Unresolvable(f"resourceId{tuple(args)}: no resource type")
    subscription, group = t.deployment.subscription_id, t.deployment.resource_group
    if position == 1:
        group = args[0]
    elif position == 2:
        subscription, group = args[0], args[1]
    typed = _type_and_names(args[position], list(args[position + 1 :]))
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{typed}"


def _format(t: Template, pattern: str, *args) -> str:
    def replace(match):
        if match[0] in {"{{", "}}"}:
            return match[0][0]
        return _to_string(args[int(match[1])])

    return re.sub(r"\{\{|\}\}|\{(\d+)(?::[^}]*)?\}", replace, pattern)


def _union(t: Template, *items):
    if all(isinstance(i, Mapping) for i in items):
        merged: dict = {}
        for item in items:
            merged.update(item)
        return merged
    if all(isinstance(i, list) for i in items):
        merged_list: list = []
        for item in items:
            merged_list.extend(x for x in item if x not in merged_list)
        return merged_list
    raise Unresolvable("union() of objects and arrays")


def _concat(t: Template, *items):
    if all(isinstance(i, list) for i in items):
        return [x for item in items for x in item]
    if all(isinstance(i, str | int) and not isinstance(i, bool) for i in items):
        return "".join(str(i) for i in items)
    raise Unresolvable(f"concat() of {items!r}")


def _create_object(t: Template, *pairs):
    if len(pairs) % 2:
        raise Unresolvable("createObject() needs pairs")
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}


def _empty(t: Template, value):
    return value is None or len(value) == 0


def _length(t: Template, value):
    return len(value)


def _reference(t: Template, target: str, api_version: str | None = None, full: str | None = None):
    if t.deployment.reference is None:
        raise Unresolvable("reference() without a stand-in")
    if "/" not in target:
        raise Unresolvable("reference() by bare name: use a resource id")
    return t.deployment.reference(target, api_version, (full or "").lower() == "full")


def _list_keys(t: Template, target: str, api_version: str):
    if t.deployment.list_keys is None:
        raise Unresolvable("listKeys() without a stand-in")
    return t.deployment.list_keys(target, api_version)


def _bool_args(function):
    def checked(t: Template, *args):
        if not all(isinstance(a, bool) for a in args):
            raise Unresolvable(f"{function.__name__}() needs bools, got {args!r}")
        return function(*args)

    return checked


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "parameters": lambda t, name: t.parameter(name),
    "variables": lambda t, name: t.variable(name),
    "concat": _concat,
    "format": _format,
    "string": lambda t, v: _to_string(v),
    "int": lambda t, v: int(v),
    "bool": lambda t, v: v if isinstance(v, bool) else str(v).lower() == "true",
    "tolower": lambda t, v: v.lower(),
    "toupper": lambda t, v: v.upper(),
    "trim": lambda t, v: v.strip(),
    "replace": lambda t, v, old, new: v.replace(old, new),
    "split": lambda t, v, delimiter: v.split(delimiter),
    "join": lambda t, items, delimiter: delimiter.join(items),
    "take": lambda t, v, n: v[: max(n, 0)],
    "skip": lambda t, v, n: v[max(n, 0) :],
    "first": lambda t, v: v[0] if v else None,
    "last": lambda t, v: v[-1] if v else None,
    "length": _length,
    "empty": _empty,
    "contains": lambda t, container, item: item in container,
    "startswith": lambda t, v, prefix: v.lower().startswith(prefix.lower()),
    "endswith": lambda t, v, suffix: v.lower().endswith(suffix.lower()),
    "uricomponent": lambda t, v: quote(v, safe=""),
    "equals": lambda t, a, b: a == b and type(a) is type(b),
    "greater": lambda t, a, b: a > b,
    "greaterorequals": lambda t, a, b: a >= b,
    "less": lambda t, a, b: a < b,
    "lessorequals": lambda t, a, b: a <= b,
    "and": _bool_args(lambda *a: all(a)),
    "or": _bool_args(lambda *a: any(a)),
    "not": _bool_args(lambda a: not a),
    "true": lambda t: True,
    "false": lambda t: False,
    "null": lambda t: None,
    "coalesce": lambda t, *a: next((x for x in a if x is not None), None),
    "createobject": _create_object,
    "createarray": lambda t, *a: list(a),
    "union": _union,
    "uniquestring": lambda t, *parts: unique_string(*parts),
    "guid": lambda t, *parts: stand_in_guid(*parts),
    "resourcegroup": lambda t: {
        "id": t.deployment.resource_group_id,
        "name": t.deployment.resource_group,
        "location": t.deployment.location,
    },
    "subscription": lambda t: {
        "id": f"/subscriptions/{t.deployment.subscription_id}",
        "subscriptionId": t.deployment.subscription_id,
        "tenantId": t.deployment.tenant_id,
    },
    "environment": lambda t: {
        "name": "AzureCloud",
        "suffixes": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"},
    },
    "resourceid": lambda t, *args: _resource_id(t, list(args)),
    "subscriptionresourceid": lambda t, resource_type, *names: (
        f"/subscriptions/{t.deployment.subscription_id}/providers/{_type_and_names(resource_type, list(names))}"
    ),
    "extensionresourceid": lambda t, scope, resource_type, *names: (
        f"{scope}/providers/{_type_and_names(resource_type, list(names))}"
    ),
    "reference": _reference,
    "listkeys": _list_keys,
}
