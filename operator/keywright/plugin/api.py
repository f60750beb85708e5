"""The plugin's Kubernetes API client: JSON over one HTTPS connection, standard library.

Owns: TLS as the kubeconfig says (its CA, or the system's; a client certificate; no
verification only when asked), the bearer token or exec credential, JSON requests and
answers, and API errors in the API server's own words (`ApiError`).
Must not: log or print a request body (a create carries no key, but a check does), or
import the Kubernetes client (see kubeconfig.py).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import Mapping
from typing import Any

from keywright.plugin import kubeconfig

TIMEOUT = 30.0


class ApiError(Exception):
    """The API server refused, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Client:
    def __init__(self, connection: kubeconfig.Connection) -> None:
        self.connection = connection
        parts = urllib.parse.urlsplit(connection.server)
        self._host, self._port = parts.hostname or "", parts.port
        self._tls = parts.scheme == "https"
        self._base = parts.path.rstrip("/")
        self._token = connection.bearer()
        cert, key = connection.cert_data, connection.key_data
        if connection.exec_spec is not None:
            got = kubeconfig.run_exec(connection.exec_spec, connection.server)
            self._token = got.token or self._token
            cert, key = got.cert_data or cert, got.key_data or key
        self._context = _tls_context(connection, cert, key) if self._tls else None
        self._http: http.client.HTTPConnection | None = None

    # -- requests ---------------------------------------------------------------------

    def get(self, path: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, query=query)

    def request(self, method: str, path: str, body: Any = None,
                query: Mapping[str, str] | None = None,
                content_type: str = "application/json",
                headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One call; the decoded JSON answer. ApiError for any answer but 2xx."""
        status, payload, _ = self.raw(method, path, body, query, content_type, headers)
        if not 200 <= status <= 299:
            raise _error(status, payload)
        found: dict[str, Any] = json.loads(payload) if payload else {}
        return found

    def raw(self, method: str, path: str, body: Any = None,
            query: Mapping[str, str] | None = None, content_type: str = "application/json",
            headers: Mapping[str, str] | None = None,
            ) -> tuple[int, bytes, dict[str, str]]:
        """One call, whatever its status: (status, body, lower-case headers)."""
        target = self._base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        sent = {"Accept": "application/json", "User-Agent": "kubectl-apikey",
                **(headers or {})}
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = content_type
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more
            connection = self._connect()
            try:
                connection.request(method, target, body=data, headers=sent)
                response = connection.getresponse()
                payload = response.read()
                return (response.status, payload,
                        {k.lower(): v for k, v in response.getheaders()})
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2 or not isinstance(exc, (http.client.RemoteDisconnected,
                                                         ConnectionResetError,
                                                         BrokenPipeError)):
                    raise ApiError(0, f"cannot reach the API server at "
                                      f"{self.connection.server}: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._http is None:
            if self._tls:
                self._http = http.client.HTTPSConnection(
                    self._host, self._port, timeout=TIMEOUT, context=self._context)
            else:
                self._http = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=TIMEOUT)
        return self._http


def _tls_context(connection: kubeconfig.Connection, cert: bytes | None,
                 key: bytes | None) -> ssl.SSLContext:
    if connection.insecure:
        context = ssl._create_unverified_context()  # noqa: S323 - asked for by the kubeconfig
    elif connection.ca_data:
        context = ssl.create_default_context(cadata=connection.ca_data.decode())
    else:
        context = ssl.create_default_context()
    if cert and key:
        # the ssl module takes a certificate and key only from files: written for the
        # moment it reads them, readable by this user alone, then removed
        with tempfile.TemporaryDirectory(prefix="kubectl-apikey-") as directory:
            pem = os.path.join(directory, "client.pem")
            descriptor = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(cert + b"\n" + key)
            context.load_cert_chain(pem)
    return context


def _error(status: int, payload: bytes) -> ApiError:
    try:
        found = json.loads(payload)
        return ApiError(status, str(found.get("message") or f"HTTP {status}"),
                        str(found.get("reason") or ""))
    except ValueError:
        return ApiError(status, payload.decode(errors="replace")[:200] or f"HTTP {status}")
