"""A real gateway for the verifier's e2e tests: Debian's nginx with `auth_request`, in
front of a small upstream that echoes the headers it received.

The nginx configuration is the one docs/gateways.md recommends: the verifier is called
the way ingress-nginx's `auth-url` calls it (requirements in the query or a header, the
original URI in X-Original-URI, the client in X-Forwarded-For, set, never appended), its
identity headers are handed upstream and no X-Keywright-* header the client sent is
(headers-more's more_clear_input_headers, before the verifier is asked), the key is not
(neither X-API-Key nor an `Authorization: Bearer`), the verifier's rate-limit headers
reach the client on the upstream's answer and on a 429, and a 429 comes back as a 429 with
the verifier's code, from its X-Keywright-Code header (auth_request alone turns anything
but 2xx/401/403 into a 500 and drops the verifier's body).
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import textwrap
import threading
from pathlib import Path

from keywright.kits import processes
from tests.support import k8s

PROXY_ADDRESS = "127.0.0.2"  # nginx talks to the verifier from here: the trusted proxy
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
