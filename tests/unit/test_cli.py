"""What `keywright ... --help` tells a newcomer matches what the commands do."""

from __future__ import annotations

import pytest

from keywright import cli


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_the_verifier_says_where_it_listens_and_where_the_pepper_is(
    capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of("verifier", capsys)
    assert "default: 0.0.0.0, every interface" in text
    assert "port (default: 8080)" in text
    assert "where the pepper Secret keywright-pepper lives" in text
    assert "else keywright-system" in text


def test_the_operator_says_its_webhooks_are_off_unless_asked_for(
    capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of("operator", capsys)
    assert "(default: 0, off)" in text
    assert "default: kw" in text


@pytest.mark.parametrize(("argv", "named", "why"), [
    (["--expiry-warnings", "14d,soon"], "--expiry-warnings", "'soon' is not a duration"),
    (["--expiry-warnings", "14d,0s"], "--expiry-warnings", "must come before expiry"),
    (["--never-used-after", "0d"], "--never-used-after", "longer than 0, or none"),
    (["--metrics-port", "70000"], "--metrics-port", "is not a port number"),
])
def test_a_bad_aging_or_metrics_flag_stops_the_operator_naming_it(
    argv: list[str], named: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["operator", *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert named in err
    assert why in err


def test_expiry_warnings_are_read_longest_first_and_none_turns_them_off() -> None:
    parsed = cli._parser().parse_args(["operator", "--expiry-warnings", "1d,14d,36h"])
    assert [t.total_seconds() / 3600 for t in parsed.expiry_warnings] == [336, 36, 24]
    parsed = cli._parser().parse_args(["operator", "--expiry-warnings", "none",
                                       "--never-used-after", "none"])
    assert (parsed.expiry_warnings, parsed.never_used_after) == ((), None)


def test_scan_says_what_it_prints_and_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("scan", capsys)
    assert "never the key" in text
    assert "Exit 1 when one is found, 0 when none, 2 for a path that does not exist" in text
    assert "skipping .git, symbolic links and binary files" in text
    assert "(default: 100)" in text
