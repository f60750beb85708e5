"""Real gateways for the verifier's e2e tests, in front of a small upstream that echoes
the headers it received: Debian's nginx with `auth_request`, and Debian's Caddy with
`forward_auth`.

The nginx configuration is the one docs/gateways.md recommends: the verifier is called
the way ingress-nginx's `auth-url` calls it (requirements in the query or a header, the
original URI in X-Original-URI, the client in X-Forwarded-For, set, never appended), its
identity headers are handed upstream and no X-Keywright-* header the client sent is
(headers-more's more_clear_input_headers, before the verifier is asked), the key is not
(neither X-API-Key nor an `Authorization: Bearer`), the verifier's rate-limit headers
reach the client on the upstream's answer and on a 429, and a 429 comes back as a 429 with
the verifier's code, from its X-Keywright-Code header (auth_request alone turns anything
but 2xx/401/403 into a 500 and drops the verifier's body).

The Caddyfile is docs/gateways.md's too, made by `caddyfile` and `caddy_route` for the
documentation and for the tests alike (tests/unit/verifier/test_gateway_config.py holds
the one to the other): the same duties, in Caddy's words (see those functions).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from keywright.kits import processes
from tests.support import k8s
from tests.support.k8s import Plaintext

PROXY_ADDRESS = "127.0.0.2"  # nginx talks to the verifier from here: the trusted proxy
# Caddy 2.6 cannot choose the address it calls from (`local_address` came in 2.9): it calls
# the verifier from 127.0.0.1, the address its verifier trusts, so its clients come from
# another one, which nothing trusts
CADDY_CLIENT = "127.0.0.3"
HEADERS_MORE = "/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so"
IDENTITY = ("namespace", "name", "scopes", "context_team", "roles", "permissions",
            "filters")
# What a client is told about its rate limit, read from the verifier's answer. add_header
# sends nothing for an empty value (no limit, or a 401/403), `always` sends it whatever the
# status; and add_header is per location (one in an `if` would replace the location's), so
# the protected locations and @verifier_said each carry the full list.
RATE_LIMIT_SET = """
          auth_request_set $kw_limit $upstream_http_x_ratelimit_limit;
          auth_request_set $kw_remaining $upstream_http_x_ratelimit_remaining;
          auth_request_set $kw_reset $upstream_http_x_ratelimit_reset;
          auth_request_set $kw_policy $upstream_http_ratelimit_policy;
          auth_request_set $kw_ratelimit $upstream_http_ratelimit;"""
RATE_LIMIT_ADD = """
          add_header X-RateLimit-Limit $kw_limit always;
          add_header X-RateLimit-Remaining $kw_remaining always;
          add_header X-RateLimit-Reset $kw_reset always;
          add_header RateLimit-Policy $kw_policy always;
          add_header RateLimit $kw_ratelimit always;"""


class Upstream(http.server.ThreadingHTTPServer):
    """Answers every request with 200 and the request's headers as JSON."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def verify_location(name: str, verifier_port: int, query: str = "",
                    scope_header: str | None = None) -> str:
    headers = f"proxy_set_header X-Keywright-Scope {scope_header};" if scope_header else ""
    return f"""
        location = /_verify_{name} {{
          internal;
          proxy_pass http://127.0.0.1:{verifier_port}/verify{query};
          proxy_bind {PROXY_ADDRESS};
          proxy_http_version 1.1;
          proxy_pass_request_body off;
          proxy_set_header Content-Length "";
          proxy_set_header Connection "";
          proxy_set_header X-Original-URI $request_uri;
          proxy_set_header X-Forwarded-For $remote_addr;
          {headers}
        }}"""


def protected_location(prefix: str, name: str, upstream_port: int) -> str:
    identity = "\n".join(
        f"auth_request_set $kw_{h} $upstream_http_x_keywright_{h};"
        f"proxy_set_header X-Keywright-{h.replace('_', '-').title()} $kw_{h};"
        for h in IDENTITY)
    return f"""
        location {prefix} {{
          auth_request /_verify_{name};
          auth_request_set $kw_status $upstream_status;
          auth_request_set $kw_code $upstream_http_x_keywright_code;
          auth_request_set $kw_retry_after $upstream_http_retry_after;{RATE_LIMIT_SET}
          {identity}
          error_page 500 = @verifier_said;{RATE_LIMIT_ADD}
          more_clear_input_headers "X-Keywright-*";
          proxy_set_header X-API-Key "";
          proxy_set_header Authorization $kw_authorization;
          proxy_pass http://127.0.0.1:{upstream_port};
        }}"""


class Nginx:
    def __init__(self, workdir: Path, verifier_port: int, upstream_port: int,
                 namespace: str) -> None:
        self.dir = workdir
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        locations = "".join([
            verify_location("invoices", verifier_port, "?scope=Invoices.Read"),
            verify_location("admin", verifier_port, scope_header="Admin.Write"),
            verify_location("team", verifier_port, f"?namespace={namespace}"),
            protected_location("/invoices/", "invoices", upstream_port),
            protected_location("/admin/", "admin", upstream_port),
            protected_location("/team/", "team", upstream_port),
        ])
        (self.dir / "nginx.conf").write_text(textwrap.dedent(f"""\
            load_module {HEADERS_MORE};
            daemon off;
            worker_processes 1;
            pid {self.dir}/nginx.pid;
            error_log {self.dir}/error.log info;
            events {{ worker_connections 256; }}
            http {{
              access_log {self.dir}/access.log;
              client_body_temp_path {self.dir}/body;
              proxy_temp_path {self.dir}/proxy;
              fastcgi_temp_path {self.dir}/fastcgi;
              uwsgi_temp_path {self.dir}/uwsgi;
              scgi_temp_path {self.dir}/scgi;
              map $http_authorization $kw_authorization {{
                "~*^bearer[ \\t]" "";
                default $http_authorization;
              }}
              server {{
                listen 127.0.0.1:{self.port};
                {locations}
                location @verifier_said {{
                  default_type application/json;
                  add_header Retry-After $kw_retry_after always;{RATE_LIMIT_ADD}
                  if ($kw_status != 429) {{
                    return 500;
                  }}
                  return 429 '{{"code":"$kw_code"}}';
                }}
              }}
            }}
            """))
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.popen = processes.spawn([nginx, "-c", str(self.dir / "nginx.conf"),
                                      "-p", str(self.dir)], self.dir / "stderr.log")

    def stop(self) -> None:
        processes.terminate(self.popen)

    def get(self, path: str, headers: dict[str, str] | None = None) -> k8s.Response:
        return k8s.http_get(self.url + path, headers)


# The Caddyfile docs/gateways.md recommends. The verifier's headers on a 200: the five
# every 200 carries are copied with forward_auth's copy_headers; the ones only some keys
# get (X-Keywright-Roles, X-Keywright-Context-<key>) are set only when the verifier sent
# them, because copy_headers does not handle a header the verifier left out: before 2.9
# it sets the placeholder's own text (`{http.reverse_proxy.header.X-Keywright-Roles}`),
# from 2.9 to 2.11.1 it leaves the client's copy (CVE-2026-30851), which the
# `request_header -X-Keywright-*` in front of it removes on every version.
ALWAYS_SENT = ("Namespace", "Name", "Scopes", "Permissions", "Filters")
CADDY_RATE_LIMIT = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                    "RateLimit-Policy", "RateLimit")


def go_spelling(header: str) -> str:
    """A header's name as Go keeps it (`X-Ratelimit-Limit`): Caddy's placeholders for the
    verifier's headers are named so, and looked up case-sensitively."""
    return "-".join(part.capitalize() for part in header.split("-"))


def answered(header: str) -> str:
    return f"{{http.reverse_proxy.header.{go_spelling(header)}}}"


def caddy_route(path: str, verifier: str, uri: str, upstream: str,
                context: tuple[str, ...] = ("team",)) -> str:
    """One protected `route`: the verifier at `verifier` asked at `uri`, the upstream at
    `upstream`, the context keys in `context` handed on."""
    optional = [("roles", "X-Keywright-Roles"),
                *((key, f"X-Keywright-Context-{key.title()}") for key in context)]
    sometimes = "".join(
        f"\n  @{name} expression `{answered(header)} != null`"
        f"\n  request_header @{name} {header} {answered(header)}" for name, header in optional)
    copied = "".join(f"\n      X-Keywright-{header}" for header in ALWAYS_SENT)
    told = "".join(f"\n    {header} {answered(header)}" for header in CADDY_RATE_LIMIT)
    return f"""route {path} {{
  request_header -X-Keywright-*   # every one the client sent, before the verifier is asked
  forward_auth {verifier} {{
    uri {uri}
    header_up X-Original-URI {{http.request.orig_uri}}   # the audit line's, not the client's
    copy_headers {{{copied}
    }}
    transport http {{
      keepalive 60s                      # idle connections closed before the verifier's 75 s
      keepalive_idle_conns_per_host 32   # Caddy's default, lost once keepalive is set
    }}
  }}
  # only some keys have these: set when the verifier sent them (one pair per context key){sometimes}
  # the client's rate limit on the upstream's answer (a 429 carries its own)
  @limited expression `{answered("X-RateLimit-Limit")} != null`
  header @limited {{{told}
  }}
  # the key stays at the gateway, in either header
  request_header -X-API-Key
  @bearer header_regexp Authorization "(?i)^bearer[ \\t]"
  request_header @bearer -Authorization
  reverse_proxy {upstream}
}}"""


def caddyfile(site: str, routes: list[str], sandbox: tuple[str, ...] = ()) -> str:
    """The whole Caddyfile: global options (`sandbox`'s first), then the site `site` with
    `routes`."""
    options = "".join(f"\n  {option}" for option in sandbox)
    inside = "\n".join(textwrap.indent(route, "  ") for route in routes)
    return f"""{{{options}
  log {{   # Caddy logs a request's headers when it cannot reach the verifier: not the key
    format filter {{
      wrap json
      fields {{
        request>headers>X-Api-Key delete
      }}
    }}
  }}
}}

{site} {{
{inside}
}}
"""


class Caddy:
    """Debian's Caddy (2.6.2 on bookworm) with the recommended Caddyfile: /invoices/
    wants Invoices.Read, /admin/ Admin.Write, /team/ a key of `namespace`; /typo/ a
    scope of an area no key has (a gateway's mistake); /dead/ asks a verifier that is not
    there. No admin endpoint, no automatic HTTPS, listening on
    127.0.0.1 only; its config and data directories and its log in `workdir`."""

    def __init__(self, workdir: Path, verifier_port: int, upstream_port: int,
                 namespace: str) -> None:
        self.dir = workdir
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        verifier, upstream = f"127.0.0.1:{verifier_port}", f"127.0.0.1:{upstream_port}"
        routes = [
            caddy_route("/invoices/*", verifier, "/verify?scope=Invoices.Read", upstream),
            caddy_route("/admin/*", verifier, "/verify?scope=Admin.Write", upstream),
            caddy_route("/team/*", verifier, f"/verify?namespace={namespace}", upstream),
            caddy_route("/typo/*", verifier, "/verify?scope=Invocies.Read", upstream),
            caddy_route("/dead/*", f"127.0.0.1:{processes.free_port()}", "/verify", upstream),
        ]
        self.config = self.dir / "Caddyfile"
        self.config.write_text(caddyfile(
            self.url, routes, sandbox=("admin off", "auto_https off", "default_bind 127.0.0.1")))
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "caddy.log"

    @property
    def program(self) -> str:
        return shutil.which("caddy") or "/usr/bin/caddy"

    def environment(self) -> dict[str, str]:
        """Caddy keeps its autosaved config and its data under these: in `workdir`."""
        return {**os.environ, "HOME": str(self.dir), "XDG_CONFIG_HOME": str(self.dir / "config"),
                "XDG_DATA_HOME": str(self.dir / "data")}

    def start(self) -> None:
        self.popen = processes.spawn(
            [self.program, "run", "--config", str(self.config), "--adapter", "caddyfile"],
            self.log, env=self.environment())

    def stop(self) -> None:
        processes.terminate(self.popen)

    def adapted(self) -> dict[str, Any]:
        """The Caddyfile as Caddy reads it: its JSON configuration."""
        done = subprocess.run(
            [self.program, "adapt", "--config", str(self.config), "--adapter", "caddyfile"],
            capture_output=True, check=True, env=self.environment(), timeout=30)
        adapted: dict[str, Any] = json.loads(done.stdout)
        return adapted

    def get(self, path: str, headers: k8s.Headers | None = None,
            source: str = CADDY_CLIENT) -> k8s.Response:
        """A request from `source` (by default the client's address, 127.0.0.3)."""
        return k8s.http_request(self.url + path, headers, source=source)


# how a client may send its key beside an Authorization of the upstream's own: the key
# as a Bearer token is kept at the gateway, another scheme passes on
KEY_CARRIERS = [
    pytest.param("bearer", False, id="the key as a Bearer token stays at the gateway"),
    pytest.param("Basic dXBzdHJlYW06b3duCg==", True,
                 id="another scheme, the upstream's own, passes"),
]


def carrying(key: Plaintext, authorization: str) -> dict[str, str]:
    """The request headers for a KEY_CARRIERS case."""
    return ({"Authorization": key.bearer()} if authorization == "bearer"
            else {"X-API-Key": key, "Authorization": authorization})
