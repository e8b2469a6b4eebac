"""What the Java servers (Kafka, S3Proxy, Apicurio Registry) share: a JRE, Maven, a port probe."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
from functools import cache
from pathlib import Path


def java() -> str:
    """The `java` on PATH, or RuntimeError."""
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("no java on PATH: the local servers need a JRE 17+")
    return found


class NoJava(RuntimeError):
    """No Java runtime of the version a server needs."""


def java_at_least(major: int) -> str:
    """A `java` of at least this major version: JAVA_HOME's, PATH's, or one under /usr/lib/jvm."""
    candidates = [os.path.join(os.environ.get("JAVA_HOME", "/nonexistent"), "bin", "java")]
    candidates += [found for found in [shutil.which("java")] if found]
    candidates += sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)
    for candidate in candidates:
        if os.access(candidate, os.X_OK) and _major_version(candidate) >= major:
            return candidate
    raise NoJava(f"no Java {major}+ (JAVA_HOME, PATH or /usr/lib/jvm)")


@cache
def _major_version(java_bin: str) -> int:
    result = subprocess.run([java_bin, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    return int(match.group(1)) if match else 0


def maven_jars(project: Path, *, marker: str) -> Path:
    """Return project/lib, first copying the pom's dependencies there with Maven unless a jar
    matching `marker` is already in it; needs java."""
    java()
    lib = project / "lib"
    if not any(lib.glob(marker)):
        maven(project, "dependency:copy-dependencies")
    return lib


def maven(project: Path, goal: str) -> None:
    """Run one Maven goal on project/pom.xml."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"no mvn on PATH to run {goal} for {project}")
    pom = str(project / "pom.xml")
    run([mvn, "-q", "-B", "-f", pom, goal], what=f"mvn -f {pom} {goal}")


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
