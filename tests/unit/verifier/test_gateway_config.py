"""The nginx configuration and the Caddyfile docs/gateways.md recommends against the ones
the e2e tests run (tests/support/gateway.py), and the 429 code nginx returns, taken from
the header the verifier names it in. No nginx, no Caddy, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from keywright.verifier import app, decision
from tests.support import gateway

DOC = Path(__file__).parents[3] / "docs" / "gateways.md"


def doc_nginx() -> str:
    text = DOC.read_text()
    section = text[text.index("## nginx (`auth_request`)"):]
    start = section.index("```nginx\n") + len("```nginx\n")
    return section[start:section.index("\n```", start)]


def e2e_nginx(tmp_path: Path) -> str:
    gateway.Nginx(tmp_path, verifier_port=1, upstream_port=2, namespace="ns")
    return (tmp_path / "nginx.conf").read_text()


def block(config: str, opening: str) -> list[str]:
    """The directives of the block that starts with `opening`, one per line, comments
    and indentation left out."""
    lines = [line.split("#")[0].strip() for line in config[config.index(opening):].splitlines()]
    depth, found = 0, []
    for line in filter(None, lines):
        depth += line.count("{") - line.count("}")
        found.append(line)
        if depth == 0:
            return found
    raise AssertionError(f"{opening!r} does not close")


def test_the_documented_verifier_said_location_is_the_tested_one(tmp_path: Path) -> None:
    opening = "location @verifier_said {"
    assert block(doc_nginx(), opening) == block(e2e_nginx(tmp_path), opening)


def test_the_documented_protected_location_reads_and_sends_what_the_tested_one_does(
    tmp_path: Path
) -> None:
    documented = block(doc_nginx(), "location /invoices/ {")
    tested = block(e2e_nginx(tmp_path), "location /invoices/ {")
    tested_directives = [part.strip() + ";" for line in tested
                         for part in line.split(";") if part.strip()]
    for line in documented:
        if line.startswith(("auth_request_set", "add_header", "error_page",
                            "proxy_set_header", "more_clear_input_headers")):
            assert line in tested_directives, line


def test_the_documented_authorization_map_is_the_tested_one(tmp_path: Path) -> None:
    """The Bearer key stays at the gateway in the documentation as in the tests."""
    opening = "map $http_authorization $kw_authorization {"
    assert block(doc_nginx(), opening) == block(e2e_nginx(tmp_path), opening)


def test_nginx_returns_the_code_the_verifier_named_in_its_header(tmp_path: Path) -> None:
    tested = e2e_nginx(tmp_path)
    assert "auth_request_set $kw_code $upstream_http_x_keywright_code;" in tested
    said = block(tested, "location @verifier_said {")
    assert said[-2:] == ["return 429 '{\"code\":\"$kw_code\"}';", "}"]
    # the verifier names every refusal's code in that header, the body's own
    for code, status in decision.STATUS.items():
        if status != 200:
            assert (app.CODE_HEADER, code.encode()) in app.HEADERS[code], code


def test_the_documented_protected_location_strips_what_the_tested_one_strips(
    tmp_path: Path
) -> None:
    """What keeps a client's forged headers and its key from the upstream is in the
    documentation, not only in the tests' configuration."""
    documented = block(doc_nginx(), "location /invoices/ {")
    tested = block(e2e_nginx(tmp_path), "location /invoices/ {")
    stripping = [part.strip() + ";" for line in tested for part in line.split(";")
                 if part.strip().startswith(("more_clear_input_headers",
                                             "proxy_set_header X-API-Key",
                                             "proxy_set_header Authorization"))]
    assert len(stripping) == 3
    for line in stripping:
        assert line in documented, line


# Caddy: the Caddyfile docs/gateways.md shows and the one the e2e tests run both come from
# tests/support/gateway.py; these hold the documentation to it.
DOC_VERIFIER = "keywright-verifier.keywright-system.svc:8080"
DOC_UPSTREAM = "invoices.billing.svc:8080"
DOC_URI = "/verify?scope=Invoices.Read&namespace=billing"
SANDBOX = ("admin off", "auto_https off", "default_bind 127.0.0.1")


def doc_caddyfile() -> str:
    text = DOC.read_text()
    section = text[text.index("## Caddy (`forward_auth`)"):]
    start = section.index("```caddyfile\n") + len("```caddyfile\n")
    return section[start:section.index("```", start)]


def e2e_caddyfile(tmp_path: Path) -> str:
    return gateway.Caddy(tmp_path, verifier_port=1, upstream_port=2,
                         namespace="ns").config.read_text()


def test_the_documented_caddyfile_is_what_the_template_makes() -> None:
    assert doc_caddyfile() == gateway.caddyfile(
        "api.example.com", [gateway.caddy_route("/invoices/*", DOC_VERIFIER, DOC_URI,
                                                DOC_UPSTREAM)])


def test_the_tested_invoices_route_is_the_documented_one_but_for_its_addresses(
    tmp_path: Path
) -> None:
    tested = block(e2e_caddyfile(tmp_path), "route /invoices/* {")
    moved = [line.replace("127.0.0.1:1 ", f"{DOC_VERIFIER} ")
             .replace("127.0.0.1:2", DOC_UPSTREAM)
             .replace("/verify?scope=Invoices.Read", DOC_URI) for line in tested]
    assert moved == block(doc_caddyfile(), "route /invoices/* {")


def test_the_tested_caddyfile_adds_only_the_sandbox_to_the_documented_options(
    tmp_path: Path
) -> None:
    tested, documented = e2e_caddyfile(tmp_path), doc_caddyfile()
    options = tested[:tested.index("\n}\n") + 3]
    assert [line.strip() for line in options.splitlines()[1:4]] == list(SANDBOX)
    assert "".join(line + "\n" for line in options.splitlines()
                   if line.strip() not in SANDBOX) == documented[:documented.index("\n}\n") + 3]


def test_every_protected_route_strips_forged_headers_and_the_key(tmp_path: Path) -> None:
    tested = e2e_caddyfile(tmp_path)
    for path in ("/invoices/*", "/admin/*", "/team/*", "/typo/*", "/dead/*"):
        route = block(tested, f"route {path} {{")
        assert route[1] == "request_header -X-Keywright-*", path  # before forward_auth
        assert route[2].startswith("forward_auth "), path
        assert route[-5:-1] == ["request_header -X-API-Key",
                                '@bearer header_regexp Authorization "(?i)^bearer[ \\t]"',
                                "request_header @bearer -Authorization",
                                "reverse_proxy 127.0.0.1:2"], path


@pytest.mark.parametrize(("header", "spelt"), [
    pytest.param("X-RateLimit-Limit", "X-Ratelimit-Limit", id="inner capitals fall"),
    pytest.param("RateLimit-Policy", "Ratelimit-Policy", id="the first word's too"),
    pytest.param("X-Keywright-Context-team", "X-Keywright-Context-Team",
                 id="each word gets one capital"),
    pytest.param("x-api-key", "X-Api-Key", id="a lower-case name gets them"),
])
def test_caddys_placeholders_name_a_header_as_go_spells_it(header: str, spelt: str) -> None:
    assert gateway.go_spelling(header) == spelt
