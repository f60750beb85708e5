"""Keywright's CustomResourceDefinitions (ApiKey, ApiKeyRole, ApiKeyPolicy), generated
from models.py.

Owns: turning pydantic's JSON Schema into a Kubernetes structural schema (inline refs,
no nulls, no titles), each kind's names, printer columns, whole-object rules and status
subresource. Pure. The committed `crds/` files are this module's output; a unit test
checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from keywright.core import models, names

_DROP = {"title", "default_factory"}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Key", "type": "string", "jsonPath": ".status.keyPreview"},
    {"name": "Scopes", "type": "string", "jsonPath": ".spec.scopes"},
    {"name": "Expires", "type": "string", "jsonPath": ".status.expiresAt"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


# Once the key is issued (status.secretName set), where it went cannot change: the same
# rule as the webhook's, for clusters with CEL (1.25+). On the whole object, because only
# there can a rule see the status; `spec.secret` may be absent, hence the defaults.
_NAME = "(has({o}.spec.secret) && has({o}.spec.secret.name) ? {o}.spec.secret.name : " \
        "{o}.metadata.name)"
_KEY = "(has({o}.spec.secret) && has({o}.spec.secret.key) ? {o}.spec.secret.key : " \
       f"'{names.DEFAULT_DATA_KEY}')"
_ISSUED = "has(oldSelf.status) && has(oldSelf.status.secretName)"
_ISSUED_AT_ALL = "has(oldSelf.status) && has(oldSelf.status.hash)"  # with a Secret or not
_CREATE = "(has({o}.spec.secret) && has({o}.spec.secret.create) ? {o}.spec.secret.create " \
          ": true)"
DELIVERY_FIXED = [
    {"rule": f"!({_ISSUED}) || {_NAME.format(o='self')} == oldSelf.status.secretName",
     "message": "spec.secret.name is immutable once the key is issued: the key was "
                "delivered there. To deliver a key elsewhere, create a new ApiKey"},
    {"rule": f"!({_ISSUED}) || {_KEY.format(o='self')} == {_KEY.format(o='oldSelf')}",
     "message": "spec.secret.key is immutable once the key is issued: the key was "
                "delivered there. To deliver a key elsewhere, create a new ApiKey"},
    {"rule": f"!({_ISSUED_AT_ALL}) || {_CREATE.format(o='self')} == "
             f"{_CREATE.format(o='oldSelf')}",
     "message": "spec.secret.create is immutable once the key is issued: the key was "
                "delivered into a Secret, or sealed with none. To deliver a key another "
                "way, create a new ApiKey"},
]


@dataclass(frozen=True)
class Kind:
    """One CustomResourceDefinition: its names, its models and what `kubectl get`
    shows."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: list[dict[str, str]]
    rules: list[dict[str, str]] = field(default_factory=list)  # on the whole object

    @property
    def name(self) -> str:
        return f"{self.plural}.{names.GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.name}.yaml"


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_READY = {"name": "Ready", "type": "string",
          "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}
APIKEY = Kind(names.KIND, names.PLURAL, names.SINGULAR, names.SHORT_NAMES,
              models.ApiKeySpec, models.ApiKeyStatus,
              "An API key: Keywright issues it into a Secret, keeps only its hash, and runs "
              "its expiry, deactivation and rotation.", PRINTER_COLUMNS, DELIVERY_FIXED)
ROLE = Kind(names.ROLE_KIND, names.ROLE_PLURAL, names.ROLE_SINGULAR, names.ROLE_SHORT_NAMES,
            models.ApiKeyRoleSpec, models.ApiKeyRoleStatus,
            "Permissions defined once: the ApiKeys of its namespace that name it in "
            "spec.roles hold them, with row filters filled from their context.",
            [_READY, {"name": "Keys", "type": "integer", "jsonPath": ".status.keys"},
             {"name": "Description", "type": "string", "jsonPath": ".spec.description"}, _AGE])
POLICY = Kind(names.POLICY_KIND, names.POLICY_PLURAL, names.POLICY_SINGULAR,
              names.POLICY_SHORT_NAMES, models.ApiKeyPolicySpec, models.ApiKeyPolicyStatus,
              "Rules every ApiKey of its namespace must keep: refused at admission, and "
              "for keys that predate it, warned or deactivated per spec.enforcement.",
              [_READY, {"name": "Enforcement", "type": "string",
                        "jsonPath": ".spec.enforcement"},
               {"name": "Keys", "type": "integer", "jsonPath": ".status.keys"},
               {"name": "Violating", "type": "integer", "jsonPath": ".status.violating"},
               _AGE])
KINDS = (APIKEY, ROLE, POLICY)
FILE_NAME = APIKEY.file_name


def definition(kind: Kind = APIKEY) -> dict[str, Any]:
    spec = _structural(kind.spec.model_json_schema())
    status = _structural(kind.status.model_json_schema())
    status.pop("additionalProperties", None)
    status["properties"]["kopf"] = {
        "type": "object",
        "description": "The operator framework's own bookkeeping.",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    root: dict[str, Any] = {"type": "object"}
    if kind.rules:
        root["x-kubernetes-validations"] = kind.rules
    root.update({
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    })
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.name},
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "listKind": f"{kind.kind}List",
            },
            "versions": [{
                "name": names.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": kind.printer_columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render(kind: Kind = APIKEY) -> str:
    header = "# Generated from operator/keywright/core/models.py by `keywright crd`. Do not edit.\n"
    return header + yaml.safe_dump(definition(kind), sort_keys=False, width=100)


def _structural(schema: dict[str, Any]) -> dict[str, Any]:
    definitions = schema.get("$defs", {})

    def convert(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged)
        if "anyOf" in node:  # Optional[X]: Kubernetes leaves the field out instead of null
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"cannot express {node['anyOf']} structurally")
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            return convert({**options[0], **rest})
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key == "$defs":
                continue
            if key == "properties":
                out[key] = {name: convert(child) for name, child in value.items()}
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                out[key] = convert(value)
            elif key == "default" and (value is None or value == [] or value == {}):
                continue  # an absent list or map is already empty
            elif key == "const":
                out["enum"] = [value]
            elif key == "pattern":  # a refusal that quotes a regex helps nobody: say it
                out.setdefault("x-kubernetes-validations", []).insert(
                    0, {"rule": f"self.matches(r'{value}')", "message": models.WORDS[value]})
            elif key == "x-kubernetes-validations":
                out.setdefault(key, []).extend(value)
            else:
                out[key] = value
        if out.get("additionalProperties") is False:
            del out["additionalProperties"]  # structural schemas prune unknown fields anyway
        return out

    return convert(schema)
