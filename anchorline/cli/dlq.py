"""`anchorline dlq list | show | replay`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from tqdm import tqdm

from anchorline.events import Stage
from anchorline.settings import Settings
from anchorline.stream import dlq

STAGES = (*(str(stage) for stage in Stage), dlq.STATUS)


def moment(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("dlq", help="list, show and replay dead-lettered messages")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, text in (("list", "list dead letters"), ("replay", "replay dead letters")):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("--stage", choices=STAGES)
        verb.add_argument("--job", help="only letters about this job id")
        verb.add_argument("--error", help="only letters whose error contains this text")
        verb.add_argument("--since", type=moment, help="ISO time; only letters at or after it")
        verb.add_argument("--until", type=moment, help="ISO time; only letters at or before it")
    verbs.choices["list"].add_argument("--json", action="store_true", help="one JSON per line")
    replay = verbs.choices["replay"]
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.add_argument("--rate", type=float, default=50.0, help="messages per second at most")
    show = verbs.add_parser("show", help="one letter decoded, with its headers")
    show.add_argument("coordinates", help="TOPIC:PARTITION:OFFSET as `dlq list` prints it")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.verb == "show":
        return show(settings, args.coordinates)
    wanted = dlq.LetterFilter(args.job, args.error, args.since, args.until)
    letters = [one for one in dlq.read_letters(settings, args.stage) if wanted.matches(one)]
    if args.verb == "list":
        return list_letters(letters, replayed=dlq.replayed(settings), as_json=args.json)
    return replay(settings, letters, dry_run=args.dry_run, rate=args.rate)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def list_letters(letters: list[dlq.DeadLetter], *, replayed: set[str], as_json: bool) -> int:
    """Each letter, `replayed` marking those replayed already, then the counts."""
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.stage] = counts.get(letter.stage, 0) + 1
        done = letter.coordinates in replayed
        if as_json:
            print(json.dumps({**letter.summary(), "replayed": done}))
        else:
            jobs = ",".join(letter.job_ids()) or "(undecodable)"
            mark = "replayed  " if done else ""
            print(
                f"{letter.coordinates}  {letter.timestamp:%Y-%m-%d %H:%M:%S}  {letter.stage:7} "
                f"{mark}{jobs}  attempts={letter.attempts}  "
                f"{letter.error_class}: {letter.error[:120]}"
            )
    if not as_json:
        total = ", ".join(f"{stage} {count}" for stage, count in sorted(counts.items())) or "none"
        again = sum(1 for letter in letters if letter.coordinates in replayed)
        print(f"{plural(len(letters), 'dead letter')} ({total}); {again} replayed already")
    return 0


def show(settings: Settings, coordinates: str) -> int:
    letter = dlq.find(settings, coordinates)
    if letter is None:
        print(f"no dead letter at {coordinates}")
        return 1
    event = letter.event()
    body = event.__dict__ if event is not None else {"undecodable": letter.value[:256].hex()}
    document = {
        **letter.summary(),
        "headers": {
            name: value.decode("utf-8", "replace") for name, value in letter.headers.items()
        },
        "message": body,
    }
    print(json.dumps(document, indent=2, default=str))
    return 0


def replay(settings: Settings, letters: list[dlq.DeadLetter], *, dry_run: bool, rate: float) -> int:
    done = dlq.replayed(settings)
    fresh = [letter for letter in letters if letter.coordinates not in done]
    print(f"{len(fresh)} to replay, {len(letters) - len(fresh)} replayed before")
    for letter in fresh:
        if letter.event() is None:
            print(f"{letter.coordinates} is undecodable: replayed, it is dead-lettered again")
    if dry_run:
        for letter in fresh:
            print(f"would replay {letter.coordinates} → {letter.original_topic}")
        return 0
    if not fresh:
        return 0
    with tqdm(total=len(fresh), unit="msg", desc="replaying") as bar:
        count = dlq.Replayer(settings, rate=rate).replay(fresh, lambda _: bar.update())
    print(f"replayed {plural(count, 'message')}")
    return 0
