"""The webhook server's own CA and serving certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from keywright.controller import webcerts


def test_the_webhook_certificate_is_signed_by_its_ca_for_the_service_names(
    tmp_path: Path
) -> None:
    dns_names = webcerts.names_for_service("keywright-webhook", "keywright-system")
    # every name the API server may use for a Service (`<svc>.<ns>.svc` and its forms)
    assert dns_names == ["keywright-webhook", "keywright-webhook.keywright-system",
                         "keywright-webhook.keywright-system.svc",
                         "keywright-webhook.keywright-system.svc.cluster.local"]
    files = webcerts.issue(tmp_path, [*dns_names, "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == dns_names
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert "keywright-webhook.keywright-system.svc" in dns_names
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    assert files.key.stat().st_mode & 0o077 == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)  # the pair matches
