"""S3Proxy on its filesystem backend: an S3 API server on 127.0.0.1 for local runs and tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from anchorline.infra.java import accepts, java, maven_jars
from anchorline.infra.process import LocalServer
from anchorline.paths import INFRA_DIR

S3PROXY_DIR: Path = INFRA_DIR / "s3proxy"
JVM_HEAP: tuple[str, ...] = ("-Xms64m", "-Xmx512m")
MAIN_CLASS = "org.gaul.s3proxy.Main"

# Without a configuration logback logs every Jetty event at DEBUG.
LOGBACK_CONFIG = """\
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>[%d] %level %msg \\(%logger\\)%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def ensure_s3proxy_jars() -> Path:
    """Return infra/s3proxy/lib, fetching the jars with Maven first if needed; needs java."""
    return maven_jars(S3PROXY_DIR, marker="s3proxy-*.jar")


class S3Proxy(LocalServer):
    """One S3Proxy process serving the S3 API on 127.0.0.1:port, objects kept as files under
    state_dir/data, every request signed (AWS v2 or v4) with the one access key it knows."""

    log_name = "s3proxy.log"

    def __init__(self, *, state_dir: Path, port: int, access_key: str, secret_key: str) -> None:
        super().__init__(state_dir)
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        self.name = f"S3Proxy on {self.endpoint}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0) -> None:
        super().start(timeout=timeout)

    def _prepare(self) -> None:
        ensure_s3proxy_jars()
        (self.state_dir / "data").mkdir(exist_ok=True)
        config = self.state_dir / "s3proxy.conf"
        config.touch(mode=0o600)  # it holds the secret key
        config.chmod(0o600)
        config.write_text(self._properties())
        (self.state_dir / "logback.xml").write_text(LOGBACK_CONFIG)

    def _properties(self) -> str:
        settings = {
            "s3proxy.endpoint": self.endpoint,
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": self.access_key,
            "s3proxy.credential": self.secret_key,
            "jclouds.provider": "filesystem",
            "jclouds.filesystem.basedir": str(self.state_dir / "data"),
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _command(self) -> list[str]:
        return [
            java(),
            *JVM_HEAP,
            "-Djava.awt.headless=true",
            f"-Dlogback.configurationFile={self.state_dir / 'logback.xml'}",
            "-cp",
            f"{S3PROXY_DIR / 'lib'}/*",
            MAIN_CLASS,
            "--properties",
            str(self.state_dir / "s3proxy.conf"),
        ]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if accepts(self.port):
                try:
                    # Unsigned, so refused (403): any S3 answer means it serves requests.
                    httpx.get(self.endpoint, timeout=2.0)
                    return
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready\n{self._log_tail()}")
            time.sleep(0.2)
