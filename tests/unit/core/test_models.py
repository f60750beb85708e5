"""The ApiKey spec: what validate_spec accepts and refuses, and the CRD made from the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import celpy.adapter
import pytest
import yaml

from keywright.core import crd, models

REPO = Path(__file__).parents[3]
AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

CONTRACT_EXAMPLE: dict[str, Any] = {
    "description": "billing-sync, owner payments, prod",
    "scopes": ["Reviews.Read", "Repositories.Write"],
    "roles": ["invoice-reader"],
    "expiration": "90d",
    "active": True,
    "ipAllowlist": ["203.0.113.0/24", "2001:db8::/32"],
    "prefix": "kw",
    "context": {"team": "payments"},
    "rateLimit": {"requests": 600, "period": "1m"},
    "secret": {"create": True, "name": "billing-sync-prod", "key": "api-key", "labels": {},
               "annotations": {}},
    "delivery": {"age": {"recipients": [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]}},
    "rotation": {
        "every": "30d",
        "gracePeriod": "1h",
        "restartTargets": [{"kind": "Deployment", "name": "billing-sync"}],
    },
}


def spec_with(**changes: Any) -> dict[str, Any]:
    """A minimal valid spec with some fields changed."""
    return {"expiration": "90d", **changes}


def test_the_contract_example_parses() -> None:
    spec = models.validate_spec(CONTRACT_EXAMPLE)
    assert spec.description == "billing-sync, owner payments, prod"
    assert spec.scopes == ["Reviews.Read", "Repositories.Write"]
    assert spec.roles == ["invoice-reader"]
    assert spec.expiration == "90d"
    assert spec.active is True
    assert spec.ipAllowlist == ["203.0.113.0/24", "2001:db8::/32"]
    assert spec.prefix == "kw"
    assert spec.context == {"team": "payments"}
    assert spec.rateLimit == models.RateLimit(requests=600, period="1m")
    assert spec.secret.model_dump() == {"create": True, "name": "billing-sync-prod",
                                        "key": "api-key", "labels": {}, "annotations": {}}
    assert spec.delivery.age.recipients == [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
    assert spec.rotation.every == "30d"
    assert spec.rotation.gracePeriod == "1h"
    assert spec.rotation.restartTargets == [
        models.RestartTarget(kind="Deployment", name="billing-sync")]
    assert spec.model_dump(exclude_none=True) == CONTRACT_EXAMPLE


def test_a_minimal_spec_gets_the_contract_defaults() -> None:
    spec = models.validate_spec({"expiration": "Never"})
    assert spec.expiration == "Never"
    assert spec.active is True
    assert spec.secret.key == "api-key"
    assert spec.secret.name is None
    assert spec.secret.labels == {}
    assert spec.secret.annotations == {}
    assert spec.rotation.gracePeriod is None  # unset: its default depends on the schedule
    assert spec.rotation.every is None
    assert spec.rotation.restartTargets == []
    assert (spec.scopes, spec.ipAllowlist, spec.context) == ([], [], {})
    assert (spec.prefix, spec.rateLimit, spec.description) == (None, None, None)


def test_active_false_is_kept() -> None:
    assert models.validate_spec(spec_with(active=False)).active is False


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(spec_with(expiration="5x"), "spec.expiration", id="expiration 5x"),
        pytest.param(spec_with(expiration="-1d"), "spec.expiration", id="expiration -1d"),
        pytest.param(spec_with(expiration="0d"), "spec.expiration", id="expiration 0d"),
        pytest.param(spec_with(expiration="never"), "spec.expiration",
                     id="expiration never in lower case"),
        pytest.param(spec_with(expiration="36601d"), "spec.expiration",
                     id="expiration beyond 36600 days, which only code checks"),
        pytest.param({"active": True}, "spec.expiration", id="missing expiration"),
        pytest.param({}, "spec.expiration", id="an empty spec lacks expiration"),
        pytest.param(None, "spec.expiration", id="no spec at all lacks expiration"),
        pytest.param(spec_with(ipAllowlist=["300.1.1.1/8"]), "spec.ipAllowlist[0]",
                     id="an IPv4 octet above 255"),
        pytest.param(spec_with(ipAllowlist=["10.0.0.0/33"]), "spec.ipAllowlist[0]",
                     id="an IPv4 prefix length above 32"),
        pytest.param(spec_with(ipAllowlist=["10.0.0.1/8"]), "spec.ipAllowlist[0]",
                     id="an IPv4 CIDR with host bits set"),
        pytest.param(spec_with(ipAllowlist=["2001:db8::/129"]), "spec.ipAllowlist[0]",
                     id="an IPv6 prefix length above 128"),
        pytest.param(spec_with(ipAllowlist=["2001:db8:::1"]), "spec.ipAllowlist[0]",
                     id="an IPv6 address with three colons"),
        pytest.param(spec_with(ipAllowlist=["2001:db8::1/32"]), "spec.ipAllowlist[0]",
                     id="an IPv6 CIDR with host bits set"),
        pytest.param(spec_with(ipAllowlist=["10.0.0.0/8", "example.com"]),
                     "spec.ipAllowlist[1]", id="the index names the bad entry"),
        pytest.param(spec_with(ipAllowlist=["10.0.0.0/8", "10.0.0.1/8"]),
                     "spec.ipAllowlist[1]", id="the index names the bad entry for code checks"),
        pytest.param(spec_with(scopes=["reviews read"]), "spec.scopes[0]",
                     id="a scope with a space"),
        pytest.param(spec_with(scopes=["Reviews.Admin"]), "spec.scopes[0]",
                     id="an action other than Read, Write, Update or Delete"),
        pytest.param(spec_with(scopes=["Reviews.Read", "Reviews.delete"]), "spec.scopes[1]",
                     id="an action in lower case"),
        pytest.param(spec_with(scopes=["Reviews.Read", "Reviews"]), "spec.scopes[1]",
                     id="a scope without a level"),
        pytest.param(spec_with(scopes=["Reviews.Read", "Reviews.Read"]), "spec.scopes",
                     id="a repeated scope"),
        pytest.param(spec_with(roles=["Invoice_Reader"]), "spec.roles[0]",
                     id="a role name that is no object name"),
        pytest.param(spec_with(delivery={"age": {"recipients": [AGE, AGE]}}),
                     "spec.delivery.age.recipients", id="a recipient twice"),
        pytest.param(spec_with(delivery={"age": {"recipients": [AGE[:-1] + "q"]}}),
                     "spec.delivery.age.recipients[0]", id="a mistyped recipient"),
        pytest.param(spec_with(secret={"create": "maybe"}), "spec.secret.create",
                     id="create is a boolean"),
        pytest.param(spec_with(roles=["reader", "reader"]), "spec.roles",
                     id="a repeated role"),
        pytest.param(spec_with(prefix="Bad-Prefix"), "spec.prefix", id="a prefix with capitals"),
        pytest.param(spec_with(prefix="a" * 17), "spec.prefix", id="a seventeen-character prefix"),
        pytest.param(spec_with(prefix="k"), "spec.prefix", id="a one-character prefix"),
        pytest.param(spec_with(colour="blue"), "spec.colour", id="an unknown field"),
        pytest.param(spec_with(secret={"key": "api key"}), "spec.secret.key",
                     id="a Secret data key with a space"),
        pytest.param(spec_with(secret={"nmae": "x"}), "spec.secret.nmae",
                     id="an unknown field in secret"),
        pytest.param(spec_with(rotation={"every": "0s"}), "spec.rotation.every",
                     id="rotation every 0s"),
        pytest.param(spec_with(rotation={"gracePeriod": "36601d"}), "spec.rotation.gracePeriod",
                     id="a grace period beyond 36600 days"),
        pytest.param(spec_with(rotation={"restartTargets": [{"kind": "Pod", "name": "x"}]}),
                     "spec.rotation.restartTargets[0].kind", id="a restart target of a bad kind"),
        pytest.param(spec_with(rateLimit={"requests": 0, "period": "1m"}),
                     "spec.rateLimit.requests", id="rate limit of zero requests"),
        pytest.param(spec_with(rateLimit={"requests": 10, "period": "0s"}),
                     "spec.rateLimit.period", id="rate limit over a zero period"),
        pytest.param(spec_with(rateLimit={"requests": 10, "period": "36601d"}),
                     "spec.rateLimit.period", id="rate limit over a period that is too long"),
    ],
)
def test_a_bad_spec_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.validate_spec(raw)
    assert caught.value.field == field
    assert str(caught.value) == f"{field}: {caught.value.reason}"
    assert caught.value.reason


def test_an_expiration_too_long_to_convert_names_the_field() -> None:
    with pytest.raises(models.SpecError) as caught:
        models.validate_spec(spec_with(expiration="9" * 5000 + "d"))
    assert caught.value.field == "spec.expiration"


def test_spec_error_carries_field_and_reason() -> None:
    error = models.SpecError("spec.prefix", "too long")
    assert isinstance(error, ValueError)
    assert (error.field, error.reason, str(error)) == ("spec.prefix", "too long",
                                                       "spec.prefix: too long")


def test_the_ip_reason_names_the_entry() -> None:
    with pytest.raises(models.SpecError, match=r"^spec\.ipAllowlist\[0\]: '10\.0\.0\.1/8': "):
        models.validate_spec(spec_with(ipAllowlist=["10.0.0.1/8"]))


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("2001:db8::/32", id="an IPv6 CIDR"),
        pytest.param("::ffff:10.0.0.0/104", id="an IPv4-mapped IPv6 CIDR"),
        pytest.param("203.0.113.0/24", id="an IPv4 CIDR"),
        pytest.param("203.0.113.7", id="a single IPv4 address"),
        pytest.param("203.0.113.7/32", id="an IPv4 host route"),
        pytest.param("0.0.0.0/0", id="every IPv4 address"),
        pytest.param("::1", id="a single IPv6 address"),
        pytest.param("::/0", id="every IPv6 address"),
        pytest.param("2001:DB8::/32", id="upper-case IPv6 digits"),
    ],
)
def test_valid_addresses_are_accepted(entry: str) -> None:
    assert models.validate_spec(spec_with(ipAllowlist=[entry])).ipAllowlist == [entry]


# --- the CRD schema agrees with the models where a schema can say it -----------------------


def spec_schema() -> dict[str, Any]:
    root = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = root["properties"]["spec"]
    return spec


def node_at(path: str) -> dict[str, Any]:
    """The schema at a dotted path under spec; `[]` steps into list items."""
    node = spec_schema()
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def cel(rule: str, value: Any, old: Any = None) -> bool:
    """A CEL rule evaluated as the API server would (cel-python), on a string or object."""
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule))
    bindings = {"self": celpy.adapter.json_to_cel(value)}
    if old is not None:
        bindings["oldSelf"] = celpy.adapter.json_to_cel(old)
    return bool(program.evaluate(bindings))


def schema_allows(path: str, value: str) -> bool:
    """Whether the value passes every rule at `path` that needs no old object (1.25+)."""
    rules = [r["rule"] for r in node_at(path).get("x-kubernetes-validations", [])
             if "oldSelf" not in r["rule"]]
    assert rules, f"no rule at {path}"
    return all(cel(rule, value) for rule in rules)


@pytest.mark.parametrize(
    ("path", "value", "raw"),
    [
        pytest.param("ipAllowlist.[]", "300.1.1.1/8", spec_with(ipAllowlist=["300.1.1.1/8"]),
                     id="an IPv4 octet above 255 fails the schema too"),
        pytest.param("ipAllowlist.[]", "10.0.0.0/33", spec_with(ipAllowlist=["10.0.0.0/33"]),
                     id="an IPv4 prefix length above 32 fails the schema too"),
        pytest.param("ipAllowlist.[]", "2001:db8::/129",
                     spec_with(ipAllowlist=["2001:db8::/129"]),
                     id="an IPv6 prefix length above 128 fails the schema too"),
        pytest.param("ipAllowlist.[]", "example.com", spec_with(ipAllowlist=["example.com"]),
                     id="a host name fails the schema too"),
        pytest.param("expiration", "5x", spec_with(expiration="5x"),
                     id="expiration 5x fails the schema too"),
        pytest.param("expiration", "-1d", spec_with(expiration="-1d"),
                     id="expiration -1d fails the schema too"),
        pytest.param("expiration", "0d", spec_with(expiration="0d"),
                     id="expiration 0d fails the schema too"),
        pytest.param("prefix", "Bad-Prefix", spec_with(prefix="Bad-Prefix"),
                     id="prefix Bad-Prefix fails the schema too"),
        pytest.param("prefix", "a" * 17, spec_with(prefix="a" * 17),
                     id="a seventeen-character prefix fails the schema too"),
        pytest.param("scopes.[]", "reviews read", spec_with(scopes=["reviews read"]),
                     id="scope 'reviews read' fails the schema too"),
        pytest.param("rotation.every", "0s", spec_with(rotation={"every": "0s"}),
                     id="rotation every 0s fails the schema too"),
        pytest.param("rateLimit.period", "0s",
                     spec_with(rateLimit={"requests": 1, "period": "0s"}),
                     id="a zero rate limit period fails the schema too"),
    ],
)
def test_schema_and_models_refuse_the_same_input(path: str, value: str, raw: Any) -> None:
    assert not schema_allows(path, value)
    with pytest.raises(models.SpecError):
        models.validate_spec(raw)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("ipAllowlist.[]", "10.0.0.1/8",
                     id="host bits set: the schema lets it through, code refuses"),
        pytest.param("ipAllowlist.[]", "2001:db8:::1",
                     id="three colons: the schema lets it through, code refuses"),
        pytest.param("expiration", "36601d",
                     id="beyond 36600 days: the schema lets it through, code refuses"),
    ],
)
def test_what_only_code_can_check(path: str, value: str) -> None:
    assert schema_allows(path, value)
    field = "spec.ipAllowlist[0]" if path.startswith("ipAllowlist") else f"spec.{path}"
    raw = spec_with(ipAllowlist=[value]) if path.startswith("ipAllowlist") else spec_with(
        **{path: value})
    with pytest.raises(models.SpecError) as caught:
        models.validate_spec(raw)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("ipAllowlist.[]", "203.0.113.0/24", id="an IPv4 CIDR passes the schema"),
        pytest.param("ipAllowlist.[]", "203.0.113.7", id="an IPv4 address passes the schema"),
        pytest.param("ipAllowlist.[]", "2001:db8::/32", id="an IPv6 CIDR passes the schema"),
        pytest.param("ipAllowlist.[]", "::ffff:10.0.0.0/104",
                     id="an IPv4-mapped CIDR passes the schema"),
        pytest.param("expiration", "90d", id="expiration 90d passes the schema"),
        pytest.param("expiration", "Never", id="expiration Never passes the schema"),
        pytest.param("expiration", "1h", id="expiration 1h passes the schema"),
        pytest.param("prefix", "kw", id="prefix kw passes the schema"),
        pytest.param("prefix", "a" * 16, id="a sixteen-character prefix passes the schema"),
        pytest.param("scopes.[]", "Reviews.Read", id="scope Reviews.Read passes the schema"),
        pytest.param("scopes.[]", "Repositories.Write",
                     id="scope Repositories.Write passes the schema"),
        pytest.param("scopes.[]", "Repositories.Update",
                     id="scope Repositories.Update passes the schema"),
        pytest.param("scopes.[]", "Repositories.Delete",
                     id="scope Repositories.Delete passes the schema"),
        pytest.param("rotation.every", "30d", id="rotation every 30d passes the schema"),
        pytest.param("rotation.gracePeriod", "0s", id="grace period 0s passes the schema"),
        pytest.param("secret.key", "api-key", id="the default data key passes the schema"),
    ],
)
def test_valid_values_pass_the_schema(path: str, value: str) -> None:
    assert schema_allows(path, value)


def test_schema_minimum_for_rate_limit_requests_is_one() -> None:
    assert spec_schema()["properties"]["rateLimit"]["properties"]["requests"]["minimum"] == 1


def test_the_schema_requires_only_expiration() -> None:
    assert spec_schema()["required"] == ["expiration"]


def test_schema_defaults_are_the_models_defaults() -> None:
    properties = spec_schema()["properties"]
    assert properties["active"]["default"] is True
    assert properties["secret"]["properties"]["key"]["default"] == "api-key"
    # no schema default: an unset grace period means "the schedule's default", which an
    # API-server default of 0s would overwrite with "none"
    assert "default" not in properties["rotation"]["properties"]["gracePeriod"]


# --- the CRD file and its shape ---------------------------------------------------------------


@pytest.mark.parametrize("kind", crd.KINDS, ids=lambda kind: kind.kind)
def test_the_committed_crds_are_what_the_models_generate(kind: crd.Kind) -> None:
    path = REPO / "crds" / kind.file_name
    committed = path.read_text() if path.exists() else "<missing>"
    assert committed == crd.render(kind), (
        f"{path.relative_to(REPO)} is out of date with operator/keywright/core/models.py: "
        "run `keywright crd --write crds/` and commit the result")
    listed = yaml.safe_load((REPO / "crds" / "kustomization.yaml").read_text())["resources"]
    assert kind.file_name in listed


def test_the_rendered_crd_is_the_definition() -> None:
    assert yaml.safe_load(crd.render()) == crd.definition()
    assert crd.render().startswith("# Generated from operator/keywright/core/models.py")


def test_crd_names() -> None:
    definition = crd.definition()
    assert definition["metadata"]["name"] == "apikeys.keywright.dev"
    assert definition["spec"]["group"] == "keywright.dev"
    assert definition["spec"]["scope"] == "Namespaced"
    assert definition["spec"]["names"] == {
        "kind": "ApiKey", "plural": "apikeys", "singular": "apikey",
        "shortNames": ["ak"], "listKind": "ApiKeyList"}
    assert [v["name"] for v in definition["spec"]["versions"]] == ["v1alpha1"]


def test_printer_columns_in_the_contracts_order() -> None:
    version = crd.definition()["spec"]["versions"][0]
    columns = version["additionalPrinterColumns"]
    # no ACTIVE column: `spec.active` read true on an Expired key; PHASE says what holds
    assert [c["name"] for c in columns] == ["Phase", "Key", "Scopes", "Expires", "Age"]
    assert columns[1]["jsonPath"] == ".status.keyPreview"


def test_the_status_subresource_is_on() -> None:
    version = crd.definition()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert (version["served"], version["storage"]) == (True, True)


def test_expiration_is_immutable_through_cel() -> None:
    rules = spec_schema()["properties"]["expiration"]["x-kubernetes-validations"]
    immutable = [rule for rule in rules if "oldSelf" in rule["rule"]]
    assert [rule["rule"] for rule in immutable] == ["self == oldSelf"]
    assert "immutable" in immutable[0]["message"]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) of every mapping in the tree, and list items as values."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield path, index, item
            yield from walk(item, f"{path}[{index}]")


def test_the_schema_is_structural() -> None:
    schema = crd.definition()["spec"]["versions"][0]["schema"]
    bad = [(path, key) for path, key, value in walk(schema)
           if key in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title")
           or value is None or value == "null"]
    assert bad == []


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node, following properties, items and additionalProperties."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}.{key}")


def test_every_schema_node_has_a_type() -> None:
    root = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    untyped = [path for path, node in schema_nodes(root) if "type" not in node]
    assert untyped == []


def test_every_object_node_with_properties_has_type_object() -> None:
    root = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    nodes = [(path, node) for path, node in schema_nodes(root) if "properties" in node]
    assert len(nodes) >= 6  # root, spec, status, secret, rotation, rateLimit, ...
    assert [path for path, node in nodes if node.get("type") != "object"] == []


def test_no_schema_refusal_quotes_a_regex() -> None:
    """Every pattern became a CEL rule with words (1.25+); older servers leave the words
    to the webhook, which says the same."""
    found = list(walk(crd.definition()))
    assert [path for path, key, _ in found if key == "pattern"] == []
    messages = [rule["message"] for _, key, rules in found
                if key == "x-kubernetes-validations" for rule in rules]
    assert len(messages) >= 10
    assert [message for message in messages if "^" in message or "$" in message] == []


NEW = {"metadata": {"name": "k"}, "spec": {"expiration": "30d"}}
ISSUED = {**NEW, "status": {"secretName": "k", "hash": "hmac-sha256:v1:x"}}
SEALED = {"metadata": {"name": "k"}, "spec": {"expiration": "30d", "secret": {
    "create": False}}, "status": {"hash": "hmac-sha256:v1:x"}}


def with_secret(base: dict[str, Any], **secret: Any) -> dict[str, Any]:
    return {**base, "spec": {**base["spec"], "secret": secret}}


@pytest.mark.parametrize(("old", "new", "allowed"), [
    pytest.param(NEW, with_secret(NEW, name="elsewhere"), True,
                 id="before the key is issued the Secret may still be renamed"),
    pytest.param(ISSUED, with_secret(ISSUED, name="elsewhere"), False,
                 id="once issued another Secret name is refused"),
    pytest.param(ISSUED, with_secret(ISSUED, name="k"), True,
                 id="spelling out the default name changes nothing and is allowed"),
    pytest.param(ISSUED, with_secret(ISSUED, key="token"), False,
                 id="once issued another data key is refused"),
    pytest.param(with_secret(ISSUED, key="token"), ISSUED, False,
                 id="dropping the secret block that named the data key is refused"),
    pytest.param(ISSUED, ISSUED, True, id="an update that leaves them is allowed"),
    pytest.param(SEALED, with_secret(SEALED, create=True), False,
                 id="a key issued with no Secret cannot be given one"),
    pytest.param(ISSUED, with_secret(ISSUED, create=False), False,
                 id="a key issued into a Secret cannot be switched to sealed only"),
    pytest.param(with_secret(NEW, create=False), NEW, True,
                 id="before the key is issued how it is delivered may change"),
    pytest.param(SEALED, SEALED, True, id="a sealed key left as it is is allowed"),
])
def test_the_delivery_rules_fix_the_secret_once_issued(
    old: dict[str, Any], new: dict[str, Any], allowed: bool
) -> None:
    root = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [r["rule"] for r in root["x-kubernetes-validations"]]
    assert len(rules) == 3
    assert all(cel(rule, new, old) for rule in rules) is allowed


@pytest.mark.parametrize(("old", "new", "allowed"), [
    pytest.param("30d", "90d", False, id="another expiration is refused"),
    pytest.param("30d", "30d", True, id="the same expiration is allowed"),
])
def test_the_expiration_rule_keeps_it(old: str, new: str, allowed: bool) -> None:
    rules = [r["rule"] for r in node_at("expiration")["x-kubernetes-validations"]
             if "oldSelf" in r["rule"]]
    assert rules
    assert all(cel(rule, new, old) for rule in rules) is allowed


def test_a_refused_context_value_is_not_quoted_back() -> None:
    with pytest.raises(models.SpecError) as caught:
        models.validate_spec(spec_with(context={"token": "s3cr3t-value\n"}))
    assert caught.value.field == "spec.context.token"
    assert "s3cr3t" not in str(caught.value)
    assert "control characters" in str(caught.value)


@pytest.mark.parametrize(
    ("quota", "field"),
    [
        pytest.param({"limit": 0}, "spec.quota.limit", id="no credits at all"),
        pytest.param({"limit": -5}, "spec.quota.limit", id="negative credits"),
        pytest.param({"limit": 5, "refill": {"every": "0d"}}, "spec.quota.refill.every",
                     id="a refill every zero days"),
        pytest.param({"limit": 5, "refill": {"every": "1d", "amount": 0}},
                     "spec.quota.refill.amount", id="a refill of nothing"),
        pytest.param({"limit": 5, "refill": {"amount": 2}}, "spec.quota.refill.every",
                     id="a refill that never comes"),
    ],
)
def test_a_quota_that_cannot_work_is_refused_naming_the_field(
        quota: dict[str, object], field: str) -> None:
    with pytest.raises(models.SpecError) as refused:
        models.validate_spec({"expiration": "30d", "quota": quota})
    assert refused.value.field == field
