from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from anchorline.infra.anvil import NODE_MODULES
from anchorline.paths import CONTRACTS_DIR, ROOT


def test_committed_artifact_matches_a_fresh_compile() -> None:
    node = shutil.which("node")
    if (node is None or not (NODE_MODULES / "solc").is_dir()) and not os.environ.get("CI"):
        pytest.skip("node or infra/node/node_modules missing: run npm ci in infra/node")
    assert node is not None, "node is not installed"
    result = subprocess.run(
        [node, str(CONTRACTS_DIR / "compile.mjs"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_artifact_names_the_committed_source() -> None:
    artifact = json.loads((CONTRACTS_DIR / "AnchorRegistry.json").read_text())
    source = (CONTRACTS_DIR / "AnchorRegistry.sol").read_bytes()
    assert artifact["sourceSha256"] == hashlib.sha256(source).hexdigest()
