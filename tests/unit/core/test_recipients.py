"""Which strings are age X25519 recipients, as a table: what Debian's `age -r` takes,
no more (the library alone would also take an upper-case or badly padded one)."""

from __future__ import annotations

import pytest

from keywright.core import recipients

SPEC_EXAMPLE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"  # age's spec
FROM_AGE_KEYGEN = "age1z4g7wvlsz25cse58eqhyx5zftrye68u28lpdhacvlf9rdknepu6sqr0y08"
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32(hrp: str, data: list[int], constant: int = 1) -> str:
    """An independent Bech32 encoder (BIP 173), to make strings the table needs."""
    def polymod(values: list[int]) -> int:
        check = 1
        for value in values:
            top = check >> 25
            check = (check & 0x1FFFFFF) << 5 ^ value
            for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD,
                                   0x2A1462B3)):
                check ^= g if (top >> i) & 1 else 0
        return check
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ constant
    return hrp + "1" + "".join(CHARSET[d] for d in data) + "".join(
        CHARSET[(mod >> 5 * (5 - i)) & 31] for i in range(6))


def payload(recipient: str) -> list[int]:
    return [CHARSET.index(c) for c in recipient[4:-6]]


def padded_wrong(recipient: str) -> str:
    data = payload(recipient)
    data[-1] |= 1  # a padding bit set: the same key to the library, refused by age
    return bech32("age", data)


@pytest.mark.parametrize(("text", "wrong"), [
    pytest.param(SPEC_EXAMPLE, None, id="the age specification's example is one"),
    pytest.param(FROM_AGE_KEYGEN, None, id="what age-keygen -y prints is one"),
    pytest.param(bech32("age", payload(SPEC_EXAMPLE)), None,
                 id="the independent encoder agrees with the validator"),
    pytest.param(SPEC_EXAMPLE[:-1] + "q", "has a wrong checksum",
                 id="one character changed is a wrong checksum"),
    pytest.param(SPEC_EXAMPLE.upper(), "must be an age X25519 recipient",
                 id="upper case, which the age tool refuses, is refused"),
    pytest.param(SPEC_EXAMPLE[:-1], "must be 62 characters long, not 61",
                 id="one character short"),
    pytest.param(SPEC_EXAMPLE[:20] + "b" + SPEC_EXAMPLE[21:], "outside Bech32's",
                 id="a character Bech32 never uses"),
    pytest.param(bech32("age", payload(SPEC_EXAMPLE), 0x2BC830A3), "wrong checksum",
                 id="Bech32m is not Bech32"),
    pytest.param(bech32("agf", payload(SPEC_EXAMPLE)), "must be an age X25519 recipient",
                 id="another human-readable part"),
    pytest.param(padded_wrong(SPEC_EXAMPLE), "does not hold a 32-byte X25519 public key",
                 id="non-zero padding bits, which the age tool refuses"),
    pytest.param("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH", "must be an age X25519 recipient",
                 id="an SSH key is not an X25519 recipient"),
    pytest.param("AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGP",
                 "must be an age X25519 recipient", id="an identity (secret) is not one"),
    pytest.param("", "must be an age X25519 recipient", id="nothing is not one"),
])
def test_recipients(text: str, wrong: str | None) -> None:
    found = recipients.problem(text)
    assert (found is None) == (wrong is None), found
    if wrong is not None:
        assert found is not None
        assert wrong in found


def test_an_annotation_lists_recipients_by_commas_or_spaces_and_keeps_only_good_ones() -> None:
    value = f" {SPEC_EXAMPLE},{FROM_AGE_KEYGEN}  {SPEC_EXAMPLE} nonsense"
    assert recipients.from_annotation(value) == (SPEC_EXAMPLE, FROM_AGE_KEYGEN)
    assert recipients.from_annotation(None) == ()
