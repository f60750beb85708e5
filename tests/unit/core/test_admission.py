"""Admission decisions as tables: ApiKey validation and Pod injection."""

from __future__ import annotations

from typing import Any

import pytest

from keywright.core import admission, compliance
from tests.support import manifests


def apikey(**spec: Any) -> dict[str, Any]:
    return manifests.apikey("billing", "pay", **spec)


def issued(**spec: Any) -> dict[str, Any]:
    """The ApiKey as stored once its key is issued (its status names the Secret)."""
    return manifests.apikey("billing", "pay", status={"secretName": "billing"}, **spec)


@pytest.mark.parametrize(("operation", "new", "old", "refused"), [
    pytest.param("CREATE", apikey(), None, None, id="a good ApiKey is admitted"),
    pytest.param("CREATE", apikey(ipAllowlist=["10.0.0.1/8"]), None, "spec.ipAllowlist[0]",
                 id="a CIDR with host bits is refused, naming the entry"),
    pytest.param("CREATE", apikey(scopes=["Reviews.Admin"]), None, "spec.scopes[0]",
                 id="a scope outside the grammar is refused"),
    pytest.param("CREATE", apikey(context={"bad key": "x"}), None, "spec.context['bad key']",
                 id="a context key that cannot be a header is refused"),
    pytest.param("CREATE", apikey(rotation={"every": "1h", "gracePeriod": "2h"}), None,
                 "spec.rotation.gracePeriod", id="a grace longer than the schedule"),
    pytest.param("UPDATE", apikey(expiration="90d"), apikey(), "spec.expiration",
                 id="changing expiration is refused"),
    pytest.param("UPDATE", apikey(active=False), apikey(), None,
                 id="changing anything else is admitted"),
    pytest.param("UPDATE", {**apikey(ipAllowlist=["10.0.0.1/8"]),
                            "metadata": {"labels": {"a": "b"}}},
                 apikey(ipAllowlist=["10.0.0.1/8"]), None,
                 id="a metadata-only update of an old bad spec is admitted"),
    pytest.param("UPDATE", {**apikey(expiration="90d"),
                            "metadata": {"deletionTimestamp": "2026-11-24T00:00:00Z"}},
                 apikey(), None, id="nothing stands in the way of a deletion"),
    pytest.param("DELETE", None, apikey(), None, id="deletes are not checked"),
    pytest.param("UPDATE", apikey(secret={"name": "elsewhere"}), issued(), "spec.secret.name",
                 id="naming another Secret once the key is issued is refused"),
    pytest.param("UPDATE", apikey(secret={"key": "token"}), issued(), "spec.secret.key",
                 id="another data key once the key is issued is refused"),
    pytest.param("UPDATE", apikey(secret={"name": "billing"}), issued(), None,
                 id="spelling out the default Secret name changes nothing and is admitted"),
    pytest.param("UPDATE", apikey(secret={"name": "x", "labels": {"a": "b"}}),
                 issued(secret={"name": "x"}), None,
                 id="new labels for the same Secret are admitted"),
    pytest.param("UPDATE", apikey(secret={"name": "elsewhere"}), apikey(), None,
                 id="before the key is issued the Secret may still be renamed"),
])
def test_apikey_admission(operation: str, new: dict[str, Any] | None,
                          old: dict[str, Any] | None, refused: str | None) -> None:
    if refused is None:
        admission.check_apikey(operation, new, old)
    else:
        with pytest.raises(admission.Refused) as caught:
            admission.check_apikey(operation, new, old)
        assert str(caught.value).startswith(refused)


def test_the_secret_refusal_says_what_it_was_and_what_to_do() -> None:
    with pytest.raises(admission.Refused, match=r"immutable once the key is issued \(it was "
                       r"'billing', not 'elsewhere'\).*create a new ApiKey"):
        admission.check_apikey("UPDATE", apikey(secret={"name": "elsewhere"}), issued())


def test_the_expiration_refusal_says_what_it_was_and_what_to_do() -> None:
    with pytest.raises(admission.Refused, match=r"immutable \(it was '30d', not '90d'\)"):
        admission.check_apikey("UPDATE", apikey(expiration="90d"), apikey())


OPTED_IN = {"keywright.dev/inject": "true"}  # the label that lets a Pod reach the webhook


def pod(annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    """A Pod with `annotations`, labelled to opt in unless `labels` says otherwise."""
    return {"metadata": {"name": "p", "annotations": annotations or {},
                         "labels": OPTED_IN if labels is None else labels},
            "spec": {"containers": [{"name": "main", "image": "app"}], **spec}}


KEYS: dict[str, dict[str, Any]] = {
    "billing": {"spec": {"secret": {"name": "billing-secret", "key": "token"}},
                "status": {"secretName": "billing-secret"}},
    "plain": {"spec": {}},
    "sealed": {"spec": {"secret": {"create": False}}}}


def lookup(name: str) -> dict[str, Any] | None:
    return KEYS.get(name)


def env_of(changed: dict[str, list[dict[str, Any]]] | None,
           field: str = "containers") -> list[Any]:
    assert changed is not None
    return [c.get("env") for c in changed[field]]


def test_a_pod_without_the_annotation_is_left_alone() -> None:
    assert admission.injection(pod(), "pay", lookup) is None


@pytest.mark.parametrize("labels", [
    pytest.param({}, id="no labels"),
    pytest.param({"keywright.dev/injected": "true", "app": "x"}, id="other labels"),
])
def test_a_pod_without_the_opt_in_label_gets_nothing_even_with_the_annotation(
    labels: dict[str, str]
) -> None:
    # the API server never sends it (objectSelector); a configuration without the
    # selector would, and the rule is the same: no label, no key, and no lookup
    def must_not_look(name: str) -> dict[str, Any] | None:
        raise AssertionError(f"looked up {name}")
    unlabelled = pod({"keywright.dev/inject": "billing"}, labels=labels)
    assert not admission.opted_in(unlabelled)
    assert admission.injection(unlabelled, "pay", must_not_look) is None


@pytest.mark.parametrize("value", ["true", "", "billing", "false"])
def test_any_value_of_the_label_opts_in(value: str) -> None:
    labelled = pod({"keywright.dev/inject": "plain"}, labels={"keywright.dev/inject": value})
    assert admission.opted_in(labelled)
    assert env_of(admission.injection(labelled, "pay", lookup))[0][0]["name"] == "API_KEY"


@pytest.mark.parametrize(("annotations", "labels", "words"), [
    pytest.param({"keywright.dev/inject": "billing"}, OPTED_IN, None, id="both: no warning"),
    pytest.param({}, {}, None, id="neither: no warning"),
    pytest.param({}, OPTED_IN, "annotation 'keywright.dev/inject' (the ApiKey's name) is not",
                 id="the label alone"),
    pytest.param({"keywright.dev/inject": " billing "}, {"app": "x"},
                 "asks for ApiKey 'billing' but the Pod lacks the label "
                 "'keywright.dev/inject': nothing is injected",
                 id="the annotation alone"),
])
def test_a_pod_with_the_label_or_the_annotation_alone_is_warned_that_it_gets_nothing(
    annotations: dict[str, str], labels: dict[str, str], words: str | None
) -> None:
    said = admission.opt_in_warning(pod(annotations, labels=labels))
    if words is None:
        assert said is None
    else:
        assert said is not None
        assert words in said


def test_the_env_var_references_the_keys_secret() -> None:
    changed = admission.injection(pod({"keywright.dev/inject": "billing"}), "pay", lookup)
    assert env_of(changed) == [[{"name": "API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "billing-secret", "key": "token"}}}]]


def test_defaults_and_a_custom_variable_name_in_every_container() -> None:
    changed = admission.injection(
        pod({"keywright.dev/inject": "plain", "keywright.dev/inject-env": "MY_KEY"},
            initContainers=[{"name": "init", "image": "x"}]), "pay", lookup)
    expected = [{"name": "MY_KEY", "valueFrom": {"secretKeyRef": {"name": "plain",
                                                                  "key": "api-key"}}}]
    assert env_of(changed) == [expected]
    assert env_of(changed, "initContainers") == [expected]


def test_a_container_that_sets_the_variable_itself_keeps_it() -> None:
    own = [{"name": "API_KEY", "value": "from-the-manifest"}]
    changed = admission.injection(pod({"keywright.dev/inject": "plain"}, containers=[
        {"name": "a", "image": "x", "env": own}, {"name": "b", "image": "x"}]), "pay", lookup)
    envs = env_of(changed)
    assert envs[0] == own
    assert envs[1][0]["valueFrom"]["secretKeyRef"]["name"] == "plain"


@pytest.mark.parametrize(("annotations", "message"), [
    pytest.param({"keywright.dev/inject": "missing"},
                 "ApiKey 'missing' not found in namespace 'pay'", id="a missing ApiKey"),
    pytest.param({"keywright.dev/inject": "Not A Name"}, "is not an ApiKey name", id="a bad name"),
    pytest.param({"keywright.dev/inject": "plain", "keywright.dev/inject-env": "1-bad"},
                 "is not a valid environment variable name", id="a bad variable name"),
    pytest.param({"keywright.dev/inject": "sealed"},
                 "has spec.secret.create: false: its key exists in no Secret",
                 id="a key sealed to people, in no Secret"),
])
def test_a_pod_that_asks_for_what_cannot_be_given_is_refused(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(admission.Refused, match=message):
        admission.injection(pod(annotations), "pay", lookup)


def role(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "n"},
            "spec": {"permissions": [{"area": "Invoices", "actions": ["Read"]}], **spec}}


@pytest.mark.parametrize(("operation", "new", "old", "refusal"), [
    pytest.param("CREATE", role(), None, None, id="a good role is admitted"),
    pytest.param("CREATE", role(permissions=[{"area": "Invoices", "actions": ["Read"],
                                              "filter": {"team": "${context.team}x"}}]),
                 None, "spec.permissions[0].filter['team']: a reference must be the whole",
                 id="a reference inside other text is refused, naming the field"),
    pytest.param("CREATE", role(permissions=[{"area": "Invoices", "actions": ["Read"],
                                              "filter": {"a b": "x"}}]),
                 None, "spec.permissions[0].filter['a b']: a filter field must be",
                 id="a filter field the schema cannot check is refused"),
    pytest.param("UPDATE", role(), role(), None, id="an update that keeps the spec passes"),
    pytest.param("DELETE", None, role(), None, id="a deletion is never refused"),
])
def test_role_admission(operation: str, new: dict[str, Any] | None,
                        old: dict[str, Any] | None, refusal: str | None) -> None:
    if refusal is None:
        admission.check_role(operation, new, old)
        return
    with pytest.raises(admission.Refused) as refused:
        admission.check_role(operation, new, old)
    assert str(refused.value).startswith(refusal)


# --- ApiKeyPolicies at admission ---------------------------------------------------------

def policies(*specs: dict[str, Any], roles: dict[str, dict[str, Any]] | None = None,
             ) -> compliance.Facts:
    return compliance.facts_of(
        "pay", [{"metadata": {"name": f"p{i}"}, "spec": spec} for i, spec in enumerate(specs)],
        [{"metadata": {"name": name}, "spec": spec} for name, spec in (roles or {}).items()])


WRITER = {"permissions": [{"area": "Invoices", "actions": ["Write"]}]}
READER = {"permissions": [{"area": "Invoices", "actions": ["Read"]}]}
GUARD = {"requireIpAllowlistFor": ["Write"]}


@pytest.mark.parametrize(("operation", "new", "old", "given", "refused"), [
    pytest.param("CREATE", apikey(scopes=["Reviews.Write"]), None, policies(), None,
                 id="without policies anything valid is admitted"),
    pytest.param("CREATE", apikey(scopes=["Reviews.Write"]), None, policies(GUARD),
                 "ApiKeyPolicy p0: write scopes require spec.ipAllowlist (Reviews.Write; "
                 "requireIpAllowlistFor: Write)",
                 id="a key breaking a policy is refused with the policy's words"),
    pytest.param("CREATE", apikey(roles=["writer"]), None, policies(GUARD, roles={
        "writer": WRITER}), "ApiKeyPolicy p0: write scopes require spec.ipAllowlist "
        "(Invoices.Write; requireIpAllowlistFor: Write)",
        id="a permission held through a role counts"),
    pytest.param("CREATE", apikey(expiration="180d", scopes=["Reviews.Write"]), None,
                 policies(GUARD, {"maxExpiration": "90d"}),
                 "ApiKeyPolicy p0: write scopes require spec.ipAllowlist (Reviews.Write; "
                 "requireIpAllowlistFor: Write); ApiKeyPolicy p1: spec.expiration 180d is "
                 "longer than maxExpiration 90d",
                 id="every rule of every policy is named at once"),
    pytest.param("UPDATE", apikey(scopes=["Reviews.Write"], active=False),
                 apikey(scopes=["Reviews.Write"]), policies(GUARD), None,
                 id="a key that predates the policy can still be deactivated"),
    pytest.param("UPDATE", apikey(scopes=["Reviews.Write", "Orders.Write"]),
                 apikey(scopes=["Reviews.Write"]), policies(GUARD), "Orders.Write",
                 id="an update that breaks a rule further is refused"),
    pytest.param("UPDATE", apikey(scopes=["Reviews.Write"], expiration="30d"),
                 apikey(scopes=["Reviews.Read"], expiration="30d"), policies(GUARD),
                 "write scopes require spec.ipAllowlist",
                 id="an update that breaks a rule anew is refused"),
    pytest.param("UPDATE", {**apikey(scopes=["Reviews.Write"]), "metadata": {
        "name": "billing", "namespace": "pay", "deletionTimestamp": "2026-12-01T00:00:00Z"}},
        apikey(scopes=["Reviews.Write"]), policies(GUARD), None,
        id="a deletion is never refused"),
])
def test_apikey_admission_under_policies(operation: str, new: dict[str, Any],
                                         old: dict[str, Any] | None,
                                         given: compliance.Facts, refused: str | None) -> None:
    if refused is None:
        admission.check_apikey_policies(operation, new, old, given, "kw")
        return
    with pytest.raises(admission.Refused) as caught:
        admission.check_apikey_policies(operation, new, old, given, "kw")
    assert refused in str(caught.value)


def role_object(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "pay"}, "spec": spec}


def keyed(name: str, **spec: Any) -> dict[str, Any]:
    return manifests.apikey(name, "pay", **spec)


def test_a_role_edit_that_would_put_keys_out_of_policy_is_refused_listing_them() -> None:
    keys = [keyed("b-key", roles=["invoices"]), keyed("a-key", roles=["invoices"]),
            keyed("fenced", roles=["invoices"], ipAllowlist=["10.0.0.0/8"]),
            keyed("other", scopes=["Reviews.Write"])]
    given = policies(GUARD, roles={"invoices": READER})
    with pytest.raises(admission.Refused) as caught:
        admission.check_role_policies("UPDATE", role_object("invoices", WRITER),
                                      role_object("invoices", READER), keys, given, "kw")
    assert str(caught.value) == (
        "ApiKeyRole invoices: this change would put 2 ApiKeys out of policy: a-key "
        "(ApiKeyPolicy p0: write scopes require spec.ipAllowlist (Invoices.Write; "
        "requireIpAllowlistFor: Write)); b-key (ApiKeyPolicy p0: write scopes require "
        "spec.ipAllowlist (Invoices.Write; requireIpAllowlistFor: Write))")


def test_a_role_created_for_keys_that_name_it_already_is_checked_too() -> None:
    keys = [keyed("waiting", roles=["invoices"])]
    with pytest.raises(admission.Refused, match="waiting"):
        admission.check_role_policies("CREATE", role_object("invoices", WRITER), None, keys,
                                      policies(GUARD), "kw")


@pytest.mark.parametrize(("new", "old", "given"), [
    pytest.param(READER, WRITER, policies(GUARD, roles={"invoices": WRITER}),
                 id="a role that narrows is admitted"),
    pytest.param(WRITER, READER, policies(roles={"invoices": READER}),
                 id="without policies any valid role is admitted"),
    pytest.param({**WRITER, "description": "wider"}, WRITER,
                 policies(GUARD, roles={"invoices": WRITER}),
                 id="an edit that leaves keys as out of policy as they were is admitted"),
])
def test_role_edits_that_keep_keys_in_policy_are_admitted(
        new: dict[str, Any], old: dict[str, Any], given: compliance.Facts) -> None:
    keys = [keyed("a-key", roles=["invoices"])]
    admission.check_role_policies("UPDATE", role_object("invoices", new),
                                  role_object("invoices", old), keys, given, "kw")


def test_a_role_edit_names_only_ten_keys_and_counts_the_rest() -> None:
    keys = [keyed(f"k{i:02}", roles=["invoices"]) for i in range(13)]
    with pytest.raises(admission.Refused) as caught:
        admission.check_role_policies("UPDATE", role_object("invoices", WRITER),
                                      role_object("invoices", READER), keys,
                                      policies(GUARD, roles={"invoices": READER}), "kw")
    assert "13 ApiKeys out of policy" in str(caught.value)
    assert str(caught.value).endswith("; and 3 more")
    assert "k09 (" in str(caught.value)
    assert "k10 (" not in str(caught.value)


@pytest.mark.parametrize(("spec", "refused"), [
    pytest.param({"maxExpiration": "90d", "enforcement": "Deactivate"}, None,
                 id="a good policy is admitted"),
    pytest.param({"nameFormat": "(open"}, "spec.nameFormat: not a regular expression",
                 id="a nameFormat that does not compile is refused"),
    pytest.param({"maxExpiration": "Never"}, "spec.maxExpiration", id="Never is no maximum"),
])
def test_policy_admission(spec: dict[str, Any], refused: str | None) -> None:
    new = {"metadata": {"name": "guard", "namespace": "pay"}, "spec": spec}
    if refused is None:
        admission.check_policy("CREATE", new, None)
        return
    with pytest.raises(admission.Refused, match=refused):
        admission.check_policy("CREATE", new, None)


# --- sealed delivery at admission --------------------------------------------------------

AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def annotated(value: str, **spec: Any) -> dict[str, Any]:
    made = apikey(**spec)
    made["metadata"]["annotations"] = {"keywright.dev/seal-to": value}
    return made


@pytest.mark.parametrize(("operation", "new", "old", "refused"), [
    pytest.param("CREATE", apikey(secret={"create": False},
                                  delivery={"age": {"recipients": [AGE]}}), None, None,
                 id="a key with no Secret, sealed to a recipient, is admitted"),
    pytest.param("CREATE", apikey(secret={"create": False}), None,
                 "spec.delivery.age.recipients: spec.secret.create is false and no age "
                 "recipient is given", id="a key with no Secret and no recipient reaches no one"),
    pytest.param("CREATE", annotated(AGE, secret={"create": False}), None, None,
                 id="a recipient in the seal-to annotation (kubectl apikey --show) is one"),
    pytest.param("CREATE", apikey(delivery={"age": {"recipients": [AGE, AGE.upper()]}}),
                 None, "spec.delivery.age.recipients[1]", id="a bad recipient, by its index"),
    pytest.param("UPDATE", annotated(f"{AGE},age1nope"), apikey(),
                 "metadata.annotations['keywright.dev/seal-to']: 'age1nope'",
                 id="a bad seal-to annotation is refused even on a metadata-only update"),
    pytest.param("UPDATE", issued(secret={"create": False},
                                  delivery={"age": {"recipients": [AGE]}}),
                 issued(delivery={"age": {"recipients": [AGE]}}),
                 "spec.secret.create: is immutable once the key is issued (it was true)",
                 id="a key delivered into a Secret cannot be switched to sealed only"),
])
def test_sealed_delivery_admission(operation: str, new: dict[str, Any],
                                   old: dict[str, Any] | None, refused: str | None) -> None:
    if refused is None:
        admission.check_apikey(operation, new, old)
        return
    with pytest.raises(admission.Refused) as caught:
        admission.check_apikey(operation, new, old)
    assert refused in str(caught.value)
