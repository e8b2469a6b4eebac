"""`anchorline sign FILE`: a manifest for a file, signed with the creator's key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anchorline.cli.keys import new_key_file, parse_key, read_key_file
from anchorline.errors import ConfigurationError
from anchorline.settings import Settings

NEW_KEY_NAME = "creator.key"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sign = commands.add_parser(
        "sign",
        help="write a manifest for a file and sign it",
        description=(
            "Write OUT/manifest.json and OUT/manifest.sig for FILE. The key comes from "
            "--key-file, else ANCHORLINE_CREATOR_KEY_FILE, else a new one is made and kept "
            f"in OUT/{NEW_KEY_NAME} (0600), to sign more files as the same creator."
        ),
    )
    sign.add_argument("file", type=Path)
    sign.add_argument("--key-file", type=Path, help="the creator's key file (anchorline keys new)")
    sign.add_argument(
        "--key", help="the key itself (visible in ps and shell history: prefer --key-file)"
    )
    sign.add_argument("--out", type=Path, default=Path("."), help="folder for manifest.json/.sig")
    sign.add_argument(
        "--scheme", choices=("eip191", "eip712"), default="eip191", help="signature scheme"
    )


def creator_key(args: argparse.Namespace, settings: Settings) -> str:
    """The key to sign with, from the first source given; a new key file if none is."""
    if args.key:
        return parse_key(args.key, where="--key")
    key_file = args.key_file or settings.creator_key_file
    if key_file:
        return read_key_file(key_file)
    path = args.out / NEW_KEY_NAME
    if path.exists():
        raise ConfigurationError(f"{path} exists: sign with --key-file {path}, or choose --out")
    new_key_file(path)
    print(f"new creator key in {path} (0600): pass --key-file {path} to sign as them again")
    return read_key_file(path)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from anchorline.proof.manifest import write_signed

    if not args.file.is_file():
        print(f"anchorline: {args.file} is not a file", file=sys.stderr)
        return 2
    key = creator_key(args, settings)
    creator = write_signed(args.file, key=key, out=args.out, scheme=args.scheme)
    print(f"signed by {creator}: {args.out / 'manifest.json'} {args.out / 'manifest.sig'}")
    print(f"submit it with signature_scheme={args.scheme}")
    return 0
