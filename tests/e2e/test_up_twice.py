"""A second `anchorline up` on the ports of a running one refuses to start, and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from system_under_test import System

ANCHORLINE = str(Path(sys.executable).parent / "anchorline")


def test_a_second_up_on_taken_ports_refuses_in_one_line(system: System, tmp_path: Path) -> None:
    env = os.environ | system.settings.as_env() | {"ANCHORLINE_STATE_DIR": str(tmp_path)}
    second = subprocess.run([ANCHORLINE, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "Traceback" not in second.stderr
    kafka_port = system.settings.kafka_bootstrap.rsplit(":", 1)[1]
    assert f"port {kafka_port} (Kafka, ANCHORLINE_KAFKA_BOOTSTRAP)" in second.stderr
    assert f"port {system.settings.http_port} (the gateway" in second.stderr
    assert "starting Kafka" not in second.stdout
    assert not (tmp_path / "kafka").exists(), "nothing of the second stack was started"
