"""`anchorline schedules create | list | get | pause | resume | delete`: schedules without curl."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from anchorline.cli.client import GatewayClient, GatewayError
from anchorline.settings import Settings

KINDS = ("verify", "proof", "anchor")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schedules = commands.add_parser(
        "schedules",
        help="create, list, pause, resume or delete scheduled jobs",
        description="Jobs on a schedule through the gateway (ANCHORLINE_GATEWAY_URL).",
    )
    verbs = schedules.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="upload FILE and schedule a job for it")
    create.add_argument("file", type=Path)
    create.add_argument("--manifest", type=Path, required=True, help="manifest.json from `sign`")
    create.add_argument("--signature", type=Path, required=True, help="manifest.sig from `sign`")
    create.add_argument("--kind", choices=KINDS, default="verify", help="stages to pass (verify)")
    create.add_argument("--scheme", choices=("eip191", "eip712"), default="eip191")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="a cron expression: 5 fields, or 6 with seconds first")
    when.add_argument("--at", help="once, at this ISO 8601 time with an offset")
    create.add_argument("--timezone", help="the cron's IANA time zone (UTC)")
    listing = verbs.add_parser("list", help="the latest schedules, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (20)")
    for verb, text in (
        ("get", "one schedule and its latest occurrences, with their jobs"),
        ("pause", "fire nothing until resumed"),
        ("resume", "fire again from the next occurrence"),
        ("delete", "fire no more"),
    ):
        verbs.add_parser(verb, help=text).add_argument("schedule_id")
    for parser in verbs.choices.values():
        parser.add_argument("--json", action="store_true", help="JSON instead of text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = GatewayClient(settings)
    try:
        if args.verb == "create":
            shown = [create(client, args)]
        elif args.verb == "list":
            shown = client.call("GET", "/v1/schedules", params={"limit": args.limit})["schedules"]
        elif args.verb == "get":
            shown = [client.call("GET", f"/v1/schedules/{args.schedule_id}")]
        elif args.verb == "delete":
            shown = [client.call("DELETE", f"/v1/schedules/{args.schedule_id}")]
        else:
            shown = [client.call("POST", f"/v1/schedules/{args.schedule_id}/{args.verb}")]
    finally:
        client.close()
    for schedule in shown:
        print(json.dumps(schedule) if args.json else describe(schedule))
    return 0


def create(client: GatewayClient, args: argparse.Namespace) -> dict[str, Any]:
    try:
        manifest, signature = args.manifest.read_text(), args.signature.read_text().strip()
        with args.file.open("rb") as content:  # streamed, not read whole
            uploaded = client.call("POST", "/v1/blobs", content=content)
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayError(f"cannot read the file: {exc}") from exc
    body = {
        "kind": args.kind,
        "content_uri": uploaded["content_uri"],
        "manifest": manifest,
        "signature": signature,
        "signature_scheme": args.scheme,
        "cron": args.cron,
        "at": args.at,
        "timezone": args.timezone,
    }
    return client.call("POST", "/v1/schedules", json={k: v for k, v in body.items() if v})


def describe(schedule: dict[str, Any]) -> str:
    """A schedule on one line, then a line an occurrence: when, its job, how it ended."""
    when = schedule.get("cron") or schedule.get("at") or ""
    if schedule.get("timezone") not in (None, "UTC"):
        when += f" ({schedule['timezone']})"
    parts = [schedule["schedule_id"], schedule.get("state", ""), when]
    if schedule.get("next_fire_at"):
        parts.append(f"next={schedule['next_fire_at']}")
    if "fired" in schedule:
        parts.append(f"fired={schedule['fired']}")
    lines = ["  ".join(str(part) for part in parts if part)]
    for occurrence in schedule.get("occurrences") or []:
        job = occurrence.get("job") or {}
        status = (job.get("result") or {}).get("verify", {}).get("status", "")
        lines.append(
            f"  {occurrence['scheduled_for']}  {occurrence['job_id']}  "
            f"{job.get('state', 'not seen yet')}  {status}".rstrip()
        )
    return "\n".join(lines)
