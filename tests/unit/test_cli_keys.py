"""A creator's key kept in a 0600 file, and `sign` using it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from anchorline.cli.keys import new_key_file, parse_key, read_key_file
from anchorline.cli.main import main
from anchorline.errors import ConfigurationError


def test_a_new_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "creator.key"
    address = new_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert address.startswith("0x") and len(address) == 42
    with pytest.raises(ConfigurationError, match="never overwritten"):
        new_key_file(path)


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "creator.key"
    new_key_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        read_key_file(path)


@pytest.mark.parametrize("text", ["0x1234", "", "zz" * 32, "0x" + "0" * 64, "0x" + "f" * 64])
def test_what_is_not_a_key_gets_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="not a"):
        parse_key(text, where="--key")


def test_sign_with_a_short_key_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = tmp_path / "a.txt"
    content.write_text("a")
    assert main(["sign", str(content), "--key", "0x1234", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--key is not a private key" in error and "Traceback" not in error


def test_two_files_signed_with_one_key_file_have_one_creator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "me.key"
    assert main(["keys", "new", str(key_file)]) == 0
    assert main(["keys", "show", str(key_file)]) == 0
    address = capsys.readouterr().out.splitlines()[-1]
    creators = []
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        out = tmp_path / f"signed-{name}"
        signing = ["sign", str(tmp_path / name), "--key-file", str(key_file), "--out", str(out)]
        assert main(signing) == 0
        creators.append(json.loads((out / "manifest.json").read_text())["creator"])
    assert creators == [address, address]


def test_sign_without_a_key_keeps_the_new_one_and_the_env_var_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = tmp_path / "a.txt"
    content.write_text("a")
    assert main(["sign", str(content), "--out", str(tmp_path / "first")]) == 0
    kept = tmp_path / "first" / "creator.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    monkeypatch.setenv("ANCHORLINE_CREATOR_KEY_FILE", str(kept))
    assert main(["sign", str(content), "--out", str(tmp_path / "second")]) == 0
    first, second = (
        json.loads((tmp_path / d / "manifest.json").read_text())["creator"]
        for d in ("first", "second")
    )
    assert first == second
    assert not (tmp_path / "second" / "creator.key").exists()
