"""The `anchorline` command's surface: --version, --help of every command, dlq wording."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anchorline.cli.dlq import list_letters, plural
from anchorline.cli.jobs import line
from anchorline.cli.main import main, parser
from anchorline.stream.dlq import DeadLetter


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.startswith("anchorline 0.")


def command_help() -> dict[str, str | None]:
    """Each command and its line in `anchorline --help`."""
    subparsers = parser()._subparsers
    assert subparsers is not None
    action = subparsers._group_actions[0]
    return {choice.dest: choice.help for choice in action._get_subactions()}


@pytest.mark.parametrize("command", sorted(command_help()))
def test_every_command_has_help_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert command_help()[command], f"{command} has no help in the command list"
    with pytest.raises(SystemExit) as ended:
        main([command, "--help"])
    assert ended.value.code == 0
    assert f"usage: anchorline {command}" in capsys.readouterr().out


def test_up_and_run_say_what_they_do(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("up", "run"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    text = capsys.readouterr().out
    assert "refuses to start when a port it needs is taken" in text
    assert "Run one service in the foreground" in text


def letter(offset: int) -> DeadLetter:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return DeadLetter("verify", "t.jobs.requested.dlq", 0, offset, b"j", b"junk", {}, when)


def test_dlq_list_marks_the_letters_replayed_and_counts_in_good_english(
    capsys: pytest.CaptureFixture[str],
) -> None:
    list_letters([letter(1)], replayed={"t.jobs.requested.dlq:0:1"}, as_json=False)
    out = capsys.readouterr().out
    assert "  replayed  " in out.splitlines()[0]
    assert out.splitlines()[-1] == "1 dead letter (verify 1); 1 replayed already"
    list_letters([letter(1), letter(2)], replayed=set(), as_json=True)
    rows = capsys.readouterr().out.splitlines()
    assert ['"replayed": false' in row for row in rows] == [True, True]


def test_plurals() -> None:
    assert [plural(n, "message") for n in (0, 1, 2)] == ["0 messages", "1 message", "2 messages"]


def test_a_job_line_names_what_matters() -> None:
    job = {"job_id": "j1", "kind": "anchor", "state": "failed", "stage": "verify", "attempts": 2}
    assert line(job | {"error": "bad signature"}) == (
        "j1  anchor  failed  stage=verify  attempts=2  bad signature"
    )
