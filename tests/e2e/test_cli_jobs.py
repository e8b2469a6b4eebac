"""The `anchorline` command as a client of a running system: sign, submit, wait, get, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from system_under_test import System

ANCHORLINE = str(Path(sys.executable).parent / "anchorline")


def cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ANCHORLINE_GATEWAY_URL": system.base_url}
    return subprocess.run([ANCHORLINE, *args], env=env, capture_output=True, text=True, timeout=180)


def signed(system: System, tmp_path: Path, name: str, key_file: Path) -> Path:
    content = tmp_path / name
    content.write_text(f"content of {name}\n")
    out = tmp_path / f"{name}.signed"
    done = cli(system, "sign", str(content), "--key-file", str(key_file), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_submit_wait_get_and_list_without_curl(system: System, tmp_path: Path) -> None:
    key_file = tmp_path / "creator.key"
    assert cli(system, "keys", "new", str(key_file)).returncode == 0
    out = signed(system, tmp_path, "a.txt", key_file)
    submitted = cli(
        system, "submit", str(tmp_path / "a.txt"), "--manifest", str(out / "manifest.json"),
        "--signature", str(out / "manifest.sig"), "--kind", "verify", "--wait", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    final = json.loads(submitted.stdout.splitlines()[-1])
    assert final["state"] == "succeeded"
    job_id = final["job_id"]

    got = cli(system, "jobs", "get", job_id, "--json")
    assert json.loads(got.stdout)["history"], got.stderr
    text = cli(system, "jobs", "get", job_id).stdout
    assert text.splitlines()[0].startswith(f"{job_id}  verify  succeeded")
    listed = cli(system, "jobs", "list", "--kind", "verify", "--limit", "100", "--json")
    assert job_id in [json.loads(row)["job_id"] for row in listed.stdout.splitlines()]
    watched = cli(system, "jobs", "watch", job_id)
    assert watched.returncode == 0 and "succeeded" in watched.stdout


def test_a_job_that_fails_ends_submit_wait_with_exit_1(system: System, tmp_path: Path) -> None:
    key_file = tmp_path / "creator.key"
    assert cli(system, "keys", "new", str(key_file)).returncode == 0
    out = signed(system, tmp_path, "a.txt", key_file)
    (tmp_path / "other.txt").write_text("not what the manifest describes")
    submitted = cli(
        system, "submit", str(tmp_path / "other.txt"), "--manifest", str(out / "manifest.json"),
        "--signature", str(out / "manifest.sig"), "--kind", "verify", "--wait",
    )  # fmt: skip
    assert submitted.returncode == 1, submitted.stdout + submitted.stderr
    assert "failed" in submitted.stdout.splitlines()[-1]


def test_an_unknown_job_and_an_unreachable_gateway_say_so_in_one_line(system: System) -> None:
    missing = cli(system, "jobs", "get", "no-such-job")
    assert missing.returncode == 1
    assert "404" in missing.stderr and "Traceback" not in missing.stderr
    env = os.environ | {"ANCHORLINE_GATEWAY_URL": "http://127.0.0.1:1"}
    down = subprocess.run(
        [ANCHORLINE, "jobs", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 1 and len(down.stderr.splitlines()) == 1, down.stderr
    assert "cannot reach the gateway at http://127.0.0.1:1" in down.stderr


def test_a_high_anchor_job_passes_every_stage_on_the_high_topics(
    system: System, tmp_path: Path
) -> None:
    key_file = tmp_path / "creator.key"
    assert cli(system, "keys", "new", str(key_file)).returncode == 0
    out = signed(system, tmp_path, "a.txt", key_file)
    submitted = cli(
        system, "submit", str(tmp_path / "a.txt"), "--manifest", str(out / "manifest.json"),
        "--signature", str(out / "manifest.sig"), "--kind", "anchor", "--priority", "high",
        "--wait", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    final = json.loads(submitted.stdout.splitlines()[-1])
    assert (final["state"], final["stage"], final["priority"]) == ("succeeded", "anchor", "high")
    text = cli(system, "jobs", "get", final["job_id"]).stdout
    assert "priority=high" in text.splitlines()[0]
