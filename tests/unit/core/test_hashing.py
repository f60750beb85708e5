"""The hash `hmac-sha256:<version>:<base64url>` and the pepper set it is made with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Mapping

import pytest

from keywright.core import hashing

# Printable on purpose: if a pepper leaked into a message, these words would show.
PEPPER_1 = b"SECRET-PEPPER-ONE-0123456789abcd"
PEPPER_2 = b"SECRET-PEPPER-TWO-0123456789abcd"
SHORT = b"SECRET-PEPPER-SHORT-012345678"
assert len(PEPPER_1) == len(PEPPER_2) == 32
assert len(SHORT) == 29

TOKEN = "kw_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg3aBcDe"
OTHER = "kw_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefh3aBcDe"

PEPPERS = hashing.Peppers("v2", {"v1": PEPPER_1, "v2": PEPPER_2})


def expected_digest(token: str, pepper: bytes, version: str) -> str:
    """The contract's formula, computed here rather than by the module."""
    mac = hmac.new(pepper, token.encode("ascii"), hashlib.sha256).digest()
    return "hmac-sha256:" + version + ":" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def leak_forms(secret: bytes) -> list[str]:
    """Ways a pepper could appear in text."""
    return [secret.decode("latin-1"), repr(secret), secret.hex(),
            base64.b64encode(secret).decode(), base64.urlsafe_b64encode(secret).decode(),
            "SECRET-PEPPER"]


def assert_no_leak(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in leak_forms(secret):
            assert form not in text


def test_digest_under_the_active_pepper_is_the_contract_formula() -> None:
    assert hashing.digest(TOKEN, PEPPERS) == expected_digest(TOKEN, PEPPER_2, "v2")


def test_digest_matches_a_published_hmac_sha256_vector() -> None:
    # RFC 4231, test case 1: key 0x0b * 20, data "Hi There".
    mac = bytes.fromhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    peppers = hashing.Peppers("v1", {"v1": b"\x0b" * 20})
    encoded = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert hashing.digest("Hi There", peppers) == f"hmac-sha256:v1:{encoded}"
    assert encoded == "sDRMYdjbOFNcqK_OrwvxK4gdwgDJgz2nJuk3bC4yz_c"


def test_digest_is_base64url_without_padding() -> None:
    hashed = hashing.digest(TOKEN, PEPPERS)
    algorithm, version, encoded = hashed.split(":")
    assert (algorithm, version) == ("hmac-sha256", "v2")
    assert len(encoded) == 43  # 32 bytes, unpadded
    assert set(encoded) <= set(string.ascii_letters + string.digits + "-_")
    assert base64.urlsafe_b64decode(encoded + "=") == hmac.new(
        PEPPER_2, TOKEN.encode(), hashlib.sha256).digest()


def test_digest_with_a_version_that_is_not_active() -> None:
    assert hashing.digest(TOKEN, PEPPERS, "v1") == expected_digest(TOKEN, PEPPER_1, "v1")
    assert hashing.digest(TOKEN, PEPPERS, "v1") != hashing.digest(TOKEN, PEPPERS)


def test_different_tokens_have_different_digests() -> None:
    assert hashing.digest(TOKEN, PEPPERS) != hashing.digest(OTHER, PEPPERS)


def _tamper(hashed: str) -> str:
    last = hashed[-2]
    return hashed[:-2] + ("A" if last != "A" else "B") + hashed[-1]


_V2 = expected_digest(TOKEN, PEPPER_2, "v2")
_V1 = expected_digest(TOKEN, PEPPER_1, "v1")
_BODY = _V2.rsplit(":", 1)[1]


@pytest.mark.parametrize(
    ("token", "hashed", "expected"),
    [
        pytest.param(TOKEN, _V2, True, id="the right token under the active pepper matches"),
        pytest.param(TOKEN, _V1, True, id="a hash under an older pepper still matches"),
        pytest.param(OTHER, _V2, False, id="another token does not match"),
        pytest.param(TOKEN, _tamper(_V2), False, id="a tampered hash does not match"),
        pytest.param(TOKEN, _V2 + "A", False, id="a hash with an extra character"),
        pytest.param(TOKEN, f"hmac-sha256:v1:{_BODY}", False,
                     id="the right bytes labelled with the wrong version do not match"),
        pytest.param(TOKEN, expected_digest(TOKEN, PEPPER_2, "v3"), False,
                     id="an unknown version does not match"),
        pytest.param(TOKEN, f"hmac-sha512:v2:{_BODY}", False,
                     id="a hash of another algorithm does not match"),
        pytest.param(TOKEN, f"sha256:v2:{_BODY}", False, id="a plain sha256 label"),
        pytest.param(TOKEN, f"v2:{_BODY}", False, id="a hash without its algorithm"),
        pytest.param(TOKEN, f"hmac-sha256:active:{_BODY}", False,
                     id="'active' is not a version"),
        pytest.param(TOKEN, "", False, id="the empty string"),
    ],
)
def test_matches(token: str, hashed: str, expected: bool) -> None:
    assert hashing.matches(token, hashed, PEPPERS) is expected


def test_matches_says_false_for_a_non_ascii_hash() -> None:
    assert hashing.matches(TOKEN, _V2[:-1] + "\u00e9", PEPPERS) is False


@pytest.mark.parametrize(
    ("hashed", "expected"),
    [
        pytest.param(_V2, "v2", id="the version of a good hash"),
        pytest.param("hmac-sha256:v10:x", "v10", id="versions may have several digits"),
        pytest.param("hmac-sha256:v0:x", None, id="there is no version zero"),
        pytest.param("hmac-sha256:v01:x", None, id="no leading zero"),
        pytest.param("hmac-sha512:v1:x", None, id="another algorithm has no version here"),
        pytest.param("garbage", None, id="garbage has no version"),
    ],
)
def test_version_of(hashed: str, expected: str | None) -> None:
    assert hashing.version_of(hashed) == expected


@pytest.mark.parametrize(
    ("data", "active", "versions"),
    [
        pytest.param({"v1": PEPPER_1, "active": b"v1"}, "v1", {"v1": PEPPER_1},
                     id="one version, active"),
        pytest.param({"v1": PEPPER_1, "v2": PEPPER_2, "active": b"v2"}, "v2",
                     {"v1": PEPPER_1, "v2": PEPPER_2}, id="two versions, the newer active"),
        pytest.param({"v1": PEPPER_1, "v2": PEPPER_2, "active": b"v1"}, "v1",
                     {"v1": PEPPER_1, "v2": PEPPER_2}, id="two versions, the older active"),
        pytest.param({"v1": PEPPER_1, "active": b"v1\n"}, "v1", {"v1": PEPPER_1},
                     id="a trailing newline on active is tolerated"),
        pytest.param({"v1": PEPPER_1 + b"more", "active": b"v1"}, "v1",
                     {"v1": PEPPER_1 + b"more"}, id="a pepper longer than 32 bytes is fine"),
    ],
)
def test_from_data_accepts(
    data: Mapping[str, bytes], active: str, versions: dict[str, bytes]
) -> None:
    peppers = hashing.Peppers.from_data(data)
    assert peppers.active == active
    assert dict(peppers.versions) == versions


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"v1": PEPPER_1, "active": b"v1", "pepper": PEPPER_2},
                     r"unexpected data keys \['pepper'\]", id="an unknown data key"),
        pytest.param({"v1": PEPPER_1, "active": b"v1", "v0": PEPPER_2},
                     r"unexpected data keys \['v0'\]", id="v0 is not a version"),
        pytest.param({"V1": PEPPER_1, "active": b"V1"},
                     r"unexpected data keys \['V1'\]", id="an upper-case version"),
        pytest.param({"v1": SHORT, "active": b"v1"}, "pepper v1 is shorter than 32 bytes",
                     id="a pepper shorter than 32 bytes"),
        pytest.param({"v1": PEPPER_1, "v2": SHORT, "active": b"v1"},
                     "pepper v2 is shorter than 32 bytes",
                     id="a short inactive pepper is refused too"),
        pytest.param({"v1": PEPPER_1, "active": b"v2"}, "'active' names 'v2', which it lacks",
                     id="active naming a missing version"),
        pytest.param({"v1": PEPPER_1}, "'active' names '', which it lacks",
                     id="no active at all"),
        pytest.param({}, "'active' names '', which it lacks", id="an empty Secret"),
    ],
)
def test_from_data_refuses_without_showing_a_pepper(
    data: Mapping[str, bytes], message: str
) -> None:
    with pytest.raises(hashing.PepperError, match=message) as caught:
        hashing.Peppers.from_data(data)
    assert isinstance(caught.value, ValueError)
    assert_no_leak(str(caught.value), PEPPER_1, PEPPER_2, SHORT)
    assert_no_leak(repr(caught.value), PEPPER_1, PEPPER_2, SHORT)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_repr_of_peppers_never_shows_the_bytes() -> None:
    assert repr(PEPPERS) == "Peppers(active='v2', versions=['v1', 'v2'])"
    assert str(PEPPERS) == repr(PEPPERS)
    assert_no_leak(repr(PEPPERS), PEPPER_1, PEPPER_2)
    assert_no_leak(f"{PEPPERS}", PEPPER_1, PEPPER_2)
    assert_no_leak(repr([PEPPERS]), PEPPER_1, PEPPER_2)


def test_to_data_is_the_secret_data() -> None:
    assert PEPPERS.to_data() == {"v1": PEPPER_1, "v2": PEPPER_2, "active": b"v2"}


def test_to_data_and_from_data_round_trip() -> None:
    again = hashing.Peppers.from_data(PEPPERS.to_data())
    assert again == PEPPERS
    assert hashing.digest(TOKEN, again) == hashing.digest(TOKEN, PEPPERS)


def test_new_peppers_are_32_random_bytes_under_v1() -> None:
    first, second = hashing.Peppers.new(), hashing.Peppers.new()
    assert first.active == "v1"
    assert sorted(first.versions) == ["v1"]
    assert len(first.versions["v1"]) == 32
    assert first.versions["v1"] != second.versions["v1"]
    assert hashing.Peppers.from_data(first.to_data()) == first
