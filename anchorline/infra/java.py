"""What the Java servers (Kafka, S3Proxy) share: a JRE, jars resolved with Maven, a port probe."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path


def java() -> str:
    """The `java` on PATH, or RuntimeError."""
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("no java on PATH: the local servers need a JRE 17+")
    return found


def maven_jars(project: Path, *, marker: str) -> Path:
    """Return project/lib, first copying the pom's dependencies there with Maven unless a jar
    matching `marker` is already in it; needs java."""
    java()
    lib = project / "lib"
    if not any(lib.glob(marker)):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(f"no {marker} in {lib} and no mvn on PATH to fetch it")
        pom = str(project / "pom.xml")
        run([mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies"], what=f"mvn -f {pom}")
    return lib


def run(command: list[str], *, what: str) -> None:
    """Run a command to its end; RuntimeError with the tail of its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise RuntimeError(f"{what} failed with code {result.returncode}\n{output}")


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
