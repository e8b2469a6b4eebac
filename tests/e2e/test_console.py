"""The console in a real browser (Debian's Chromium driven by Playwright) against `anchorline up`:
find a job, read its history, see the stages, and replay a dead job after a dry run, its
replay then shown in the job's history. Screenshots go to build/test-artifacts/console/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from eth_account import Account
from system_under_test import System, wait_terminal

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.paths import ROOT
from anchorline.proof.manifest import sign_eip191
from anchorline.stream import codec

ARTIFACTS = ROOT / "build" / "test-artifacts" / "console"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def unavailable(reason: str) -> None:
    """Skip on a laptop without a browser; in CI a missing one is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    executable = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    if executable is None:
        unavailable("no Chromium (anchorline setup --browser installs Debian's)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def dead_on_arrival(system: System) -> str:
    """A valid job whose record carries a header out of bounds: the verifier dead-letters it
    (nothing wrong with the job itself, so a replay, which drops the header, succeeds)."""
    content = f"console {time.time()}".encode()
    uri = httpx.post(f"{system.base_url}/v1/blobs", content=content, timeout=30).json()
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    job = JobRequested(
        job_id=new_id(),
        kind=JobKind.VERIFY,
        content_uri=uri["content_uri"],
        manifest=json.dumps(document),
        signature=sign_eip191(document, account.key.hex()),
        submitted_at=utcnow(),
    )
    producer = Producer({"bootstrap.servers": system.settings.kafka_bootstrap})
    producer.produce(
        system.settings.topics.jobs_requested,
        key=job.job_id.encode(),
        value=codec.encode(job),
        headers=[("retry_topic-attempts", b"0")],
    )
    assert producer.flush(30) == 0
    return job.job_id


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_operator_finds_a_dead_job_and_replays_it(page: Any, system: System) -> None:
    job_id = dead_on_arrival(system)
    assert wait_terminal(system, job_id)["state"] == "dead"

    page.goto(f"{system.base_url}/#/jobs?state=dead")
    page.get_by_role("link", name=job_id).wait_for()
    shot(page, "jobs")
    page.fill("input[name=tenant]", "nobody")  # another tenant's dead jobs: none
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/#/jobs?state=dead&tenant=nobody")
    # The unfiltered list had the same columns: wait for its job's link to go, not for a header.
    page.get_by_role("link", name=job_id).wait_for(state="detached")
    page.get_by_role("columnheader", name="created").wait_for()
    page.fill("input[name=id]", job_id)
    page.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name=f"Job {job_id} dead").wait_for()
    assert "BadHeader" in page.inner_text("main") or "retry_topic-attempts" in page.inner_text(
        "main"
    )
    assert len(page.inner_text("#trace")) == 32  # the trace it was dead-lettered in
    shot(page, "job-dead")

    page.click("a[data-tab=stages]")
    page.get_by_role("heading", name="Stages").wait_for()
    assert "anchorline.jobs.requested" in page.inner_text("main")
    page.get_by_role("heading", name="Service processes").wait_for()
    page.get_by_text("anchorline-verifier-", exact=False).first.wait_for()  # a process's id
    page.locator("svg.spark").first.wait_for()  # lag and throughput over time
    shot(page, "stages")

    page.goto(f"{system.base_url}/#/dead?job={job_id}")
    page.get_by_text("1 dead letter").wait_for()
    page.click("#replay-filtered")
    page.get_by_text("Dry run: 1 would be replayed").wait_for()
    shot(page, "dead-letters-dry-run")
    page.click("#replay-confirm")
    page.get_by_text("replayed 1 of 1").wait_for()

    assert wait_terminal(system, job_id)["state"] == "succeeded"
    page.goto(f"{system.base_url}/#/job/{job_id}")
    page.get_by_role("heading", name=f"Job {job_id} succeeded").wait_for()
    assert "replayed from anchorline.jobs.requested.dlq" in page.inner_text("main")
    shot(page, "job-replayed")

    page.goto(f"{system.base_url}/#/dead?job={job_id}")
    page.get_by_text("replayed", exact=True).wait_for()  # the letter is marked, not offered again


def test_an_operator_sees_a_schedules_jobs_and_pauses_it(page: Any, system: System) -> None:
    content = f"scheduled {time.time()}".encode()
    uri = httpx.post(f"{system.base_url}/v1/blobs", content=content, timeout=30).json()
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    body = {
        "kind": "verify",
        "content_uri": uri["content_uri"],
        "manifest": json.dumps(document),
        "signature": sign_eip191(document, account.key.hex()),
        "cron": "*/2 * * * * *",  # the e2e system lowers the floor to 1 s
    }
    created = httpx.post(f"{system.base_url}/v1/schedules", json=body, timeout=30)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["schedule_id"]

    page.goto(f"{system.base_url}/#/schedules")
    page.get_by_role("link", name=schedule_id).click()
    page.get_by_role("heading", name=f"Schedule {schedule_id} active").wait_for()
    deadline = time.monotonic() + 60
    while "succeeded" not in page.inner_text("main"):  # an occurrence's job, shown ended
        assert time.monotonic() < deadline, page.inner_text("main")
        page.wait_for_timeout(1000)
        page.reload()
    occurrences = page.locator("main table").nth(1)
    job_id = occurrences.locator("tr", has_text="succeeded").first.get_by_role("link").inner_text()
    # by its id: the table re-renders (the pause, new occurrences), so "the first succeeded row"
    # may be another job by the time it is clicked
    job_link = occurrences.get_by_role("link", name=job_id, exact=True)
    shot(page, "schedule")
    page.click("#pause")
    page.get_by_role("heading", name=f"Schedule {schedule_id} paused").wait_for()
    assert httpx.get(f"{system.base_url}/v1/schedules/{schedule_id}").json()["state"] == "paused"
    job_link.click()
    page.get_by_role("heading", name=f"Job {job_id} succeeded").wait_for()
    page.get_by_role("link", name=schedule_id).wait_for()  # the job names its schedule
    httpx.delete(f"{system.base_url}/v1/schedules/{schedule_id}", timeout=10)
