"""Apicurio Registry on 127.0.0.1: a schema registry for local runs and tests, with a
Confluent-compatible API under /apis/ccompat/v7."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from anchorline.infra.java import java_at_least, maven
from anchorline.infra.ports import free_port
from anchorline.infra.process import LocalServer
from anchorline.paths import INFRA_DIR

APICURIO_DIR: Path = INFRA_DIR / "apicurio"
APP_DIR: Path = APICURIO_DIR / "app"
JAVA_MAJOR = 21  # Apicurio Registry 3.3 is built for Java 21
JVM_HEAP: tuple[str, ...] = ("-Xms64m", "-Xmx512m")
CONFLUENT_API = "/apis/ccompat/v7"


def ensure_apicurio() -> Path:
    """Return infra/apicurio/app, unpacking the app there with Maven first if needed."""
    java_at_least(JAVA_MAJOR)
    if not (APP_DIR / "quarkus-run.jar").exists():
        maven(APICURIO_DIR, "dependency:unpack")
    return APP_DIR


class ApicurioRegistry(LocalServer):
    """One Apicurio Registry process on 127.0.0.1:port, its schemas kept in an H2 database
    under state_dir/data: records on Kafka name their schemas by the ids it gave them, so
    they must outlive a restart."""

    log_name = "apicurio.log"

    def __init__(self, *, state_dir: Path, port: int, management_port: int | None = None) -> None:
        super().__init__(state_dir)
        self.port = port
        # Its health and metrics interface: on by build (Apicurio 3.3), 0.0.0.0:9000 unless
        # told otherwise, so it would clash with anything on 9000 (S3Proxy's default port).
        self.management_port = management_port or free_port()
        self.name = f"Apicurio Registry on {self.base_url}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def confluent_url(self) -> str:
        """The URL Confluent's clients take (ANCHORLINE_SCHEMA_REGISTRY_URL)."""
        return self.base_url + CONFLUENT_API

    def start(self, *, timeout: float = 180.0) -> None:  # Quarkus takes 10-40 s to come up
        super().start(timeout=timeout)

    def _prepare(self) -> None:
        ensure_apicurio()

    def _command(self) -> list[str]:
        return [
            java_at_least(JAVA_MAJOR),
            *JVM_HEAP,
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={self.management_port}",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.state_dir / 'data' / 'registry'}",
            "-jar",
            str(APP_DIR / "quarkus-run.jar"),
        ]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if httpx.get(self.confluent_url + "/subjects", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready\n{self._log_tail()}")
            time.sleep(0.5)
