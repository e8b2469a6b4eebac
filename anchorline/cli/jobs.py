"""`anchorline submit` and `anchorline jobs get | list | watch`: jobs without curl."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anchorline.cli.client import GatewayClient, GatewayError
from anchorline.settings import Settings

TERMINAL = frozenset({"succeeded", "failed", "dead"})
KINDS = ("verify", "proof", "anchor")
STATES = ("queued", "running", "retrying", "succeeded", "failed", "dead")
EXIT_UNSUCCESSFUL = 1  # the job failed or died
POLL_S = 0.5


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    submit = commands.add_parser(
        "submit",
        help="submit a file as a job to the gateway",
        description=(
            "POST FILE with its signed manifest to the gateway (ANCHORLINE_GATEWAY_URL, "
            "with ANCHORLINE_API_KEY if set) and print the job id."
        ),
    )
    submit.add_argument("file", type=Path)
    submit.add_argument("--manifest", type=Path, required=True, help="manifest.json from `sign`")
    submit.add_argument("--signature", type=Path, required=True, help="manifest.sig from `sign`")
    submit.add_argument("--kind", choices=KINDS, default="anchor", help="stages to pass (anchor)")
    submit.add_argument("--scheme", choices=("eip191", "eip712"), default="eip191")
    submit.add_argument(
        "--priority",
        choices=("high", "normal", "low"),
        help="the order stages take it in when behind (the tenant's default, else normal)",
    )
    _waiting(submit, "wait until the job is final and print it (exit 1 if it failed or died)")
    _as_json(submit)
    jobs = commands.add_parser("jobs", help="get, list or watch jobs")
    verbs = jobs.add_subparsers(dest="verb", required=True)
    get = verbs.add_parser("get", help="one job, with its history")
    get.add_argument("job_id")
    _as_json(get)
    listing = verbs.add_parser("list", help="the latest jobs, newest first")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--kind", choices=KINDS)
    listing.add_argument("--limit", type=int, default=20, help="how many (20)")
    _as_json(listing)
    watch = verbs.add_parser("watch", help="print a job's changes until it is final")
    watch.add_argument("job_id")
    _waiting(watch, None)
    _as_json(watch)


def _waiting(parser: argparse.ArgumentParser, wait_help: str | None) -> None:
    if wait_help:
        parser.add_argument("--wait", action="store_true", help=wait_help)
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the end (300)"
    )


def _as_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON instead of text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = GatewayClient(settings)
    try:
        if args.command == "submit":
            return submit(client, args)
        if args.verb == "get":
            return show(client.get(args.job_id), as_json=args.json)
        if args.verb == "list":
            page = client.list(state=args.state, kind=args.kind, limit=args.limit)
            return list_jobs(page["jobs"], as_json=args.json)
        return watch(client, args.job_id, timeout=args.timeout, as_json=args.json)
    finally:
        client.close()


def submit(client: GatewayClient, args: argparse.Namespace) -> int:
    accepted = client.submit(
        args.file,
        manifest=_read(args.manifest),
        signature=_read(args.signature).strip(),
        kind=args.kind,
        scheme=args.scheme,
        priority=args.priority,
    )
    if not args.wait:
        if args.json:
            print(json.dumps(accepted))
        else:
            print(f"{accepted['job_id']}  {accepted['kind']}  {accepted['state']}")
        return 0
    if not args.json:
        print(f"{accepted['job_id']}  {accepted['kind']}  {accepted['state']}")
    return watch(client, accepted["job_id"], timeout=args.timeout, as_json=args.json)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayError(f"cannot read {path}: {exc}") from exc


def show(job: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(job))
        return 0
    print(line(job))
    for event in job.get("history") or []:
        note = event.get("error") or event.get("note") or ""
        print(
            f"  {event.get('occurred_at', '')}  {event.get('stage')}  {event.get('state')}  {note}"
        )
    return 0


def list_jobs(jobs: list[dict[str, Any]], *, as_json: bool) -> int:
    for job in jobs:
        print(json.dumps(job) if as_json else line(job))
    if not as_json:
        print(f"{len(jobs)} {'job' if len(jobs) == 1 else 'jobs'}")
    return 0


def line(job: dict[str, Any]) -> str:
    """A job on one line: id, kind, state, where it is and why it ended badly."""
    parts = [job["job_id"], job.get("kind", ""), job.get("state", "")]
    if job.get("stage"):
        parts.append(f"stage={job['stage']}")
    if job.get("priority") not in (None, "normal"):
        parts.append(f"priority={job['priority']}")
    if job.get("progress") not in (None, 0, 100):
        parts.append(f"progress={job['progress']}%")
    if (job.get("attempts") or 0) > 1:
        parts.append(f"attempts={job['attempts']}")
    if job.get("error"):
        parts.append(str(job["error"])[:200])
    return "  ".join(str(part) for part in parts)


def watch(
    client: GatewayClient,
    job_id: str,
    *,
    timeout: float,
    as_json: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the job each time it changes until it is final: 0 succeeded, 1 failed or dead."""
    deadline = time.monotonic() + timeout
    seen: tuple[Any, ...] = ()
    while True:
        job = _current(client, job_id)
        if job is not None:
            now = (job.get("state"), job.get("stage"), job.get("progress"), job.get("attempts"))
            if now != seen:
                seen = now
                print(json.dumps(job) if as_json else line(job), flush=True)
            if job.get("state") in TERMINAL:
                return 0 if job["state"] == "succeeded" else EXIT_UNSUCCESSFUL
        if time.monotonic() >= deadline:
            raise GatewayError(f"job {job_id} not final after {timeout:g} s")
        sleep(POLL_S)


def _current(client: GatewayClient, job_id: str) -> dict[str, Any] | None:
    """The job, or None while the projector has not seen it yet (a 404 just after submitting)."""
    try:
        return client.get(job_id)
    except GatewayError as exc:
        if exc.status == 404:
            return None
        raise
