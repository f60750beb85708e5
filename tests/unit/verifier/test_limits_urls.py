"""The limits backend's URL forms as tables: `redis+sentinel://` and `redis+cluster://`
parsed into their parts, malformed ones refused in one line that repeats no part of the
URL, and the password from --redis-password-file put into every form so that redis-py
(or the parser) reads it back unchanged, whatever its characters."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.connection
from hypothesis import given
from hypothesis import strategies as st

from keywright.verifier import limits_backend
from keywright.verifier.limits_backend import Topology
from keywright.verifier.redis_pipe import Address

LOCAL = ("127.0.0.1", 26379)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("redis+sentinel://127.0.0.1:26379/keywright",
                     Topology("sentinel", (LOCAL,), "keywright"), id="one sentinel"),
        pytest.param("redis+sentinel://a:26380,b,[::1]:26381/mymaster/3",
                     Topology("sentinel", (("a", 26380), ("b", 26379), ("::1", 26381)),
                              "mymaster", 3), id="three sentinels, default port, IPv6, db"),
        pytest.param("redis+sentinel://s1/mymaster/",
                     Topology("sentinel", (("s1", 26379),), "mymaster"), id="trailing slash"),
        pytest.param("redis+sentinel://:p%40ss%2Fw0rd@s1:26379/mymaster/0",
                     Topology("sentinel", (("s1", 26379),), "mymaster", 0, None, "p@ss/w0rd"),
                     id="percent-encoded password"),
        pytest.param("redis+sentinel://verifier:pw@s1/mymaster?sentinel_auth=yes",
                     Topology("sentinel", (("s1", 26379),), "mymaster", 0, "verifier", "pw",
                              sentinel_auth=True), id="user, sentinel_auth=yes"),
        pytest.param("REDIS+SENTINEL://s1/mymaster?sentinel_auth=No",
                     Topology("sentinel", (("s1", 26379),), "mymaster"), id="case"),
        pytest.param("redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
                     Topology("cluster", (("10.0.0.1", 7000), ("10.0.0.2", 7001))),
                     id="cluster"),
        pytest.param("redis+cluster://:pw@node/",
                     Topology("cluster", (("node", 6379),), password="pw"),
                     id="cluster, default port, password"),
        pytest.param("redis+cluster://node:7000/0",
                     Topology("cluster", (("node", 7000),)), id="cluster, db 0"),
    ],
)
def test_sentinel_and_cluster_urls_are_read_into_their_parts(url: str,
                                                             expected: Topology) -> None:
    got = limits_backend.parse(url)
    assert got == expected
    assert got is not None
    assert got.password == expected.password  # the dataclass compares it, repr hides it


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://:pw@h:6380/1",
                                 "unix:///run/redis.sock?db=2", "http://h/"])
def test_other_urls_are_left_to_redis_py(url: str) -> None:
    assert limits_backend.parse(url) is None




@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("redis://h:6380/2", Address("h", 6380, db=2), id="host, port, db"),
        pytest.param("redis://h", Address("h"), id="default port and db"),
        pytest.param("redis://:p%40ss@h/0", Address("h", password="p@ss"),
                     id="percent-encoded password"),
        pytest.param("redis://verifier:pw@h/0?client_name=kw",
                     Address("h", username="verifier", password="pw", client_name="kw"),
                     id="user, client name"),
        pytest.param("unix:///run/redis.sock?db=3&password=pw",
                     Address(path="/run/redis.sock", db=3, password="pw"), id="socket"),
    ],
)
def test_one_redis_gets_the_pipelined_connection(url: str, expected: Address) -> None:
    got = limits_backend.pipe_address(url)
    assert got == expected
    assert got is not None
    assert got.password == expected.password  # the dataclass compares it, repr hides it


@pytest.mark.parametrize(
    ("url", "verify", "check_hostname"),
    [
        pytest.param("rediss://h:6380/0", "CERT_REQUIRED", True, id="verified by default"),
        pytest.param("rediss://h/0?ssl_cert_reqs=none", "CERT_NONE", False, id="not verified"),
        pytest.param("rediss://h/0?ssl_check_hostname=false", "CERT_REQUIRED", False,
                     id="any name"),
    ],
)
def test_tls_is_verified_as_redis_py_would(url: str, verify: str,
                                           check_hostname: bool) -> None:
    got = limits_backend.pipe_address(url)
    assert got is not None
    assert got.tls is not None
    assert got.tls.verify_mode.name == verify
    assert got.tls.check_hostname is check_hostname


@pytest.mark.parametrize("url", [
    "redis+sentinel://s1/mymaster", "redis+cluster://n1:7000",
    "redis://h/0?socket_keepalive=yes", "rediss://h/0?ssl_min_version=3",
    "rediss://h/0?ssl_cert_reqs=sometimes",
])
def test_other_urls_and_options_keep_redis_py(url: str) -> None:
    """Sentinel, Cluster, and options the pipelined connection does not honour: redis-py's
    client, which does, rather than an option silently ignored."""
    assert limits_backend.pipe_address(url) is None


SECRET = "s3cr3t-Passw0rd"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis+sentinel://s1:26379", "no SERVICE"),
        ("redis+sentinel://s1:26379/", "no SERVICE"),
        ("redis+sentinel://s1/mymaster/zero", "after SERVICE only a database number"),
        ("redis+sentinel://s1/mymaster/0/extra", "after SERVICE only a database number"),
        ("redis+sentinel:///mymaster", "host 1 is missing"),
        ("redis+sentinel://s1,,s2/mymaster", "host 2 is missing"),
        ("redis+sentinel://s1:port/mymaster", "the port of host 1 is not a number"),
        ("redis+sentinel://s1:0/mymaster", "the port of host 1 is not a number"),
        ("redis+sentinel://s1:65536/mymaster", "the port of host 1 is not a number"),
        ("redis+sentinel://s1:1:2/mymaster", "host 1 is not HOST or HOST:PORT"),
        ("redis+sentinel://s1,x[::1]/mymaster", "host 2 is not HOST or HOST:PORT"),
        ("redis+sentinel://s1,[::1/mymaster", "the hosts are not HOST[:PORT]"),
        ("redis+sentinel://s1/mymaster?sentinel_auth=maybe", "sentinel_auth is yes or no"),
        ("redis+sentinel://s1/mymaster?db=2", "an unknown parameter"),
        ("redis+sentinel://s1/mymaster?sentinel_auth", "the query is not NAME=VALUE"),
        ("redis+sentinel://s1/mymaster#frag", "'#' has no meaning"),
        ("redis+cluster://n1:7000/3", "a Redis Cluster has only database 0"),
        ("redis+cluster://n1:7000?readonly=yes", "a cluster URL takes none"),
        ("redis+cluster://n1:x", "the port of host 1 is not a number"),
        ("redis+cluster://", "host 1 is missing"),
        ("rediss+cluster://n1:7000", "TLS is not supported"),
        ("rediss+sentinel://s1/mymaster", "TLS is not supported"),
    ],
)
def test_a_malformed_url_is_refused_in_one_line_that_names_the_form(url: str,
                                                                     said: str) -> None:
    with pytest.raises(limits_backend.BackendConfigError) as refused:
        limits_backend.parse(url)
    message = str(refused.value)
    assert said in message
    assert "\n" not in message
    assert message.startswith("--redis-url")
    if not url.startswith("rediss"):
        assert "expected redis+" in message  # the form, spelled out


@pytest.mark.parametrize("url", [
    f"redis+cluster://:{SECRET}@n1:7000/3",
    f"redis+cluster://:{SECRET}@n1:7000?x=1",
    f"redis+sentinel://:{SECRET}@s1",
    f"redis+sentinel://:{SECRET}@s1:no/m",
    f"redis+sentinel://:{SECRET[:4]}/{SECRET[4:]}@s1/m",  # a '/' left unencoded
    f"redis+sentinel://:{SECRET[:4]}?{SECRET[4:]}@s1/m",  # a '?' left unencoded
    f"redis+cluster://:{SECRET}@n1:7000,:{SECRET}",
    f"redis+cluster://:{SECRET}@n1:7000,[{SECRET}",
])
def test_a_refusal_repeats_no_part_of_the_url(url: str) -> None:
    with pytest.raises(limits_backend.BackendConfigError) as refused:
        limits_backend.parse(url)
    leaked = any(piece in str(refused.value) for piece in (SECRET[:4], SECRET[4:]))
    assert not leaked, "a piece of the password is in the message"


def test_the_password_is_not_in_a_topologys_repr() -> None:
    parsed = limits_backend.parse(f"redis+cluster://:{SECRET}@n1:7000")
    leaked = SECRET in repr(parsed)
    assert not leaked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", "redis://:PW@h:6379/0"),
        ("redis://h", "redis://:PW@h"),
        ("redis://verifier@h:6379/0", "redis://verifier:PW@h:6379/0"),
        ("rediss://h:6380/1?ssl_cert_reqs=required", "rediss://:PW@h:6380/1?ssl_cert_reqs=required"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock?password=PW"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2&password=PW"),
        ("redis+sentinel://s1:26379,s2:26379/mymaster/0?sentinel_auth=yes",
         "redis+sentinel://:PW@s1:26379,s2:26379/mymaster/0?sentinel_auth=yes"),
        ("redis+sentinel://verifier@s1/mymaster", "redis+sentinel://verifier:PW@s1/mymaster"),
        ("redis+cluster://n1:7000,n2:7001", "redis+cluster://:PW@n1:7000,n2:7001"),
    ],
)
def test_the_password_file_goes_into_every_form(tmp_path: Path, url: str,
                                                expected: str) -> None:
    (tmp_path / "password").write_text("PW\n")
    assert limits_backend.url_with_password(url, tmp_path / "password") == expected


@pytest.mark.parametrize("url", ["redis://:pw@h/0", "redis+sentinel://:pw@s1/m",
                                 "redis+cluster://:pw@n1"])
def test_a_password_in_both_places_is_refused(tmp_path: Path, url: str) -> None:
    (tmp_path / "password").write_text("other")
    with pytest.raises(limits_backend.BackendConfigError, match="keep one"):
        limits_backend.url_with_password(url, tmp_path / "password")


def test_no_password_file_leaves_the_url_alone() -> None:
    assert limits_backend.url_with_password("redis+cluster://n1", None) == "redis+cluster://n1"


# any printable text (a password file is read as text: a control character such as \r
# is no password anyone writes there)
passwords = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1,
                    max_size=40).filter(lambda text: text == text.strip())


@given(password=passwords)
def test_any_password_reads_back_unchanged(tmp_path_factory: pytest.TempPathFactory,
                                           password: str) -> None:
    path = tmp_path_factory.getbasetemp() / "limits-urls-password"  # one file, rewritten
    path.write_text(password)
    for url in ("redis+sentinel://s1,s2/mymaster/1", "redis+cluster://n1:7000"):
        parsed = limits_backend.parse(limits_backend.url_with_password(url, path))
        assert parsed is not None
        assert parsed.password == password
    for url in ("redis://h:6379/0", "unix:///run/redis.sock"):
        read = redis.connection.parse_url(
            limits_backend.url_with_password(url, path))
        assert read["password"] == password
