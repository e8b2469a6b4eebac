"""Where the repository's non-Python assets live."""

from __future__ import annotations

from pathlib import Path

ROOT: Path = Path(__file__).resolve().parents[1]
SCHEMAS_DIR: Path = ROOT / "schemas"
CONTRACTS_DIR: Path = ROOT / "contracts"
INFRA_DIR: Path = ROOT / "infra"
