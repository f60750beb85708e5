"""Effective permissions as tables: a key's scopes and its roles' permissions become
grants per Area.Action, unrestricted or bound by row filters with the key's context
filled in; missing roles and unfillable filters grant nothing; the filters header; an
ApiKeyRole's spec, read into permissions or refused naming its field."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

import pytest

from keywright.core import models, permissions
from keywright.core.permissions import Effective, Permission

TEAM = (("team", "${context.team}"),)
ROLES: Mapping[str, Sequence[Permission]] = {
    "reviewer": [Permission("Reviews", ("Read",), TEAM)],
    "editor": [Permission("Reviews", ("Write",), TEAM), Permission("Repos", ("Update",))],
    "cleaner": [Permission("Reviews", ("Delete",), (("owner", "${context.owner}"),))],
    "auditor": [Permission("Reviews", ("Read",))],
    "regional": [Permission("Reviews", ("Read",), (("region", "eu"), ("team", "core")))],
}
CONTEXT = {"team": "payments"}
TEAM_FILTER = {"team": "${context.team}"}


@pytest.mark.parametrize(("scopes", "roles", "granted", "filters"), [
    pytest.param(["Reviews.Read"], [], {"Reviews.Read"}, {},
                 id="a scope alone grants itself, unbound"),
    pytest.param(["Reviews.Write"], [], {"Reviews.Write", "Reviews.Read"}, {},
                 id="a Write scope grants Read too"),
    pytest.param(["Reviews.Update", "Reviews.Delete"], [],
                 {"Reviews.Update", "Reviews.Delete"}, {},
                 id="Update and Delete grant only themselves"),
    pytest.param([], ["reviewer"], {"Reviews.Read"},
                 {"Reviews.Read": ((("team", "payments"),),)},
                 id="a role grants its permission bound by its filter, context filled in"),
    pytest.param([], ["editor"], {"Reviews.Write", "Reviews.Read", "Repos.Update"},
                 {"Reviews.Write": ((("team", "payments"),),),
                  "Reviews.Read": ((("team", "payments"),),)},
                 id="a role's Write grants Read under the same filter"),
    pytest.param(["Reviews.Read"], ["reviewer"], {"Reviews.Read"}, {},
                 id="a scope for the same action leaves it unbound"),
    pytest.param([], ["reviewer", "auditor"], {"Reviews.Read"}, {},
                 id="a role without a filter leaves the action unbound"),
    pytest.param([], ["reviewer", "regional"], {"Reviews.Read"},
                 {"Reviews.Read": ((("region", "eu"), ("team", "core")),
                                   (("team", "payments"),))},
                 id="two roles' filters for one action are alternatives"),
    pytest.param([], ["reviewer", "reviewer"], {"Reviews.Read"},
                 {"Reviews.Read": ((("team", "payments"),),)},
                 id="a role named twice counts once"),
    pytest.param(["Repos.Read"], ["gone"], {"Repos.Read"}, {},
                 id="a missing role grants nothing, and the scopes still count"),
    pytest.param([], ["cleaner"], set(), {},
                 id="a filter naming a context entry the key lacks grants nothing"),
    pytest.param([], ["cleaner", "reviewer"], {"Reviews.Read"},
                 {"Reviews.Read": ((("team", "payments"),),)},
                 id="an unfillable permission does not spoil the other roles"),
])
def test_effective_permissions(scopes: list[str], roles: list[str], granted: set[str],
                               filters: dict[str, tuple[permissions.Filter, ...]]) -> None:
    found = permissions.effective(scopes, roles, ROLES, CONTEXT)
    assert found.granted == granted
    assert dict(found.filters) == filters


def test_missing_roles_and_unfilled_filters_are_named() -> None:
    found = permissions.effective([], ["gone", "cleaner", "reviewer", "also-gone"], ROLES,
                                  CONTEXT)
    assert found.roles == ("cleaner", "reviewer")
    assert found.missing == ("also-gone", "gone")
    assert found.unfilled == (("cleaner", "owner"),)


@pytest.mark.parametrize(("value", "filled"), [
    pytest.param("${context.team}", "payments", id="a whole reference is filled"),
    pytest.param("team", "team", id="a literal stays"),
    pytest.param("${context.team}-x", "${context.team}-x",
                 id="a reference inside other text is a literal"),
    pytest.param("${team}", "${team}", id="only context references are filled"),
])
def test_filter_values(value: str, filled: str) -> None:
    assert permissions.fill((("f", value),), CONTEXT) == ((("f", filled),), None)


@pytest.mark.parametrize(("asked", "document"), [
    pytest.param([], {"Reviews": {"Read": [{"team": "payments"}]},
                      "Repos": {"Delete": [{"owner": "me"}]}},
                 id="nothing asked: every area's filters"),
    pytest.param(["Reviews.Read"], {"Reviews": {"Read": [{"team": "payments"}]}},
                 id="only the areas asked for"),
    pytest.param(["Billing.Read"], {}, id="an area with no filters: an empty object"),
])
def test_the_filters_header(asked: list[str], document: dict[str, object]) -> None:
    found = Effective(frozenset({"Reviews.Read", "Repos.Delete", "Billing.Read"}),
                      {"Reviews.Read": ((("team", "payments"),),),
                       "Repos.Delete": ((("owner", "me"),),)})
    header = permissions.filters_header(found, asked)
    assert b"=" not in header
    decoded = base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))
    assert json.loads(decoded) == {"v": 1, "filters": document}


def test_allows_needs_every_required_scope() -> None:
    found = permissions.effective(["Reviews.Write"], [], ROLES, CONTEXT)
    assert found.allows({"Reviews.Read", "Reviews.Write"})
    assert not found.allows({"Reviews.Read", "Reviews.Delete"})


def test_a_role_spec_becomes_the_permissions_it_grants() -> None:
    spec = models.validate_role_spec({"description": "reads its team's reviews",
                                      "permissions": [{"area": "Reviews", "actions": ["Read"],
                                                       "filter": TEAM_FILTER}]})
    granted = permissions.effective([], ["reviewer"],
                                    {"reviewer": models.role_permissions(spec)}, CONTEXT)
    assert granted.granted == {"Reviews.Read"}
    assert dict(granted.filters) == {"Reviews.Read": ((("team", "payments"),),)}



@pytest.mark.parametrize(("spec", "field"), [
    pytest.param({}, "spec.permissions", id="a role grants something"),
    pytest.param({"permissions": []}, "spec.permissions", id="at least one permission"),
    pytest.param({"permissions": [{"area": "Reviews.Read", "actions": ["Read"]}]},
                 "spec.permissions[0].area", id="an area is not a scope"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": []}]},
                 "spec.permissions[0].actions", id="at least one action"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": ["Admin"]}]},
                 "spec.permissions[0].actions[0]", id="actions are the four"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": ["Read", "Read"]}]},
                 "spec.permissions[0].actions", id="an action named twice"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": ["Read"],
                                   "filter": {"team id": "x"}}]},
                 "spec.permissions[0].filter['team id']", id="a filter field with a space"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": ["Read"],
                                   "filter": {"team": "${context.team}-eu"}}]},
                 "spec.permissions[0].filter['team']",
                 id="a reference that is not the whole value"),
    pytest.param({"permissions": [{"area": "Reviews", "actions": ["Read"],
                                   "filter": {"team": "a\nb"}}]},
                 "spec.permissions[0].filter.team", id="a control character in a value"),
])
def test_a_bad_role_spec_names_its_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(models.SpecError) as refused:
        models.validate_role_spec(spec)
    assert refused.value.field == field
