"""A creator's signing key, kept in a file only its owner can read (never on a command line)."""

from __future__ import annotations

import argparse
import os
import re
import stat
from pathlib import Path

from eth_account import Account

from anchorline.errors import ConfigurationError

KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")
KEY_FILE_MODE = 0o600
# A file whose group or others may read it holds a key that is no longer only its owner's.
OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def parse_key(text: str, *, where: str) -> str:
    """The private key in `text` as 0x + 64 hex digits; a clear error for anything else."""
    candidate = text.strip()
    if not KEY.fullmatch(candidate):
        raise ConfigurationError(
            f"{where} is not a private key: expected 64 hex digits (32 bytes), with or without "
            f"0x, got {len(candidate)} characters"
        )
    key = "0x" + candidate.removeprefix("0x").lower()
    try:
        Account.from_key(key)
    except (ValueError, TypeError) as exc:  # zero, or past the curve's order
        raise ConfigurationError(f"{where} is not a valid secp256k1 private key") from exc
    return key


def address_of(key: str) -> str:
    return str(Account.from_key(key).address)


def new_key_file(path: Path) -> str:
    """Write a new random key to `path` (created 0600, never over an existing file); its address."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "0x" + bytes(Account.create().key).hex()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise ConfigurationError(f"{path} exists: a key file is never overwritten") from None
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    return address_of(key)


def read_key_file(path: Path) -> str:
    """The key in `path`, refused if others than its owner may read it (as ssh refuses)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigurationError(f"no key file at {path} (anchorline keys new {path})") from None
    if mode & OPEN_BITS:
        raise ConfigurationError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
        )
    return parse_key(path.read_text(), where=f"the key in {path}")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "keys",
        help="make or show a creator's signing key file (0600)",
        description="A creator signs every manifest with one key, kept in a file (mode 0600).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    new = verbs.add_parser("new", help="write a new random key to FILE and print its address")
    new.add_argument("file", type=Path)
    show = verbs.add_parser("show", help="print the address of the key in FILE")
    show.add_argument("file", type=Path)


def run(args: argparse.Namespace) -> int:
    if args.verb == "new":
        address = new_key_file(args.file)
        print(f"new key for {address} in {args.file} (mode 0600)")
        print(f"sign with: anchorline sign FILE --key-file {args.file}")
    else:
        print(address_of(read_key_file(args.file)))
    return 0
