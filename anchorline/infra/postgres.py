"""A throwaway PostgreSQL cluster on 127.0.0.1 for local runs and tests."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg

from anchorline.infra.process import Startable

DATABASE = "anchorline"
ROLE = "anchorline"
DEBIAN_PREFIX: Path = Path("/usr/lib/postgresql")
# Durability is worthless for a throwaway cluster; these make tests a lot faster.
SERVER_OPTIONS: tuple[str, ...] = (
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
)


def ensure_postgres_installed() -> Path:
    """Return PostgreSQL's bin dir, installing the Debian package first when root and missing."""
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        _install_postgres()
        bin_dir = _find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    if _is_root():
        _runuser()
        _postgres_user()
    return bin_dir


class PostgresServer(Startable):
    """One PostgreSQL cluster with an `anchorline` superuser role and database."""

    def __init__(self, *, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir.resolve()  # the process runs with it as cwd
        self.port = port

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def home(self) -> Path:
        """Where the cluster's files live: state_dir, or a /tmp dir the postgres user can reach."""
        if not _is_root():
            return self.state_dir
        # Root's temp dirs (pytest's among them) are 0700, and the server runs as postgres.
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/tmp") / f"anchorline-pg-{digest}"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def start(self, *, timeout: float = 60.0) -> None:
        """Initialise the cluster on first use, start it and create the role and database."""
        bin_dir = ensure_postgres_installed()
        self._prepare_home()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(bin_dir / "initdb", *self._initdb_args(), what="initdb")
        self._run(bin_dir / "pg_ctl", "start", *self._start_args(timeout), what="pg_ctl start")
        self._create_role_and_database()

    def stop(self) -> None:
        """Stop the server with a fast shutdown; a no-op when it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        bin_dir = ensure_postgres_installed()
        stop_args = ["-w", "-m", "fast", "-D", str(self.data_dir)]
        self._run(bin_dir / "pg_ctl", "stop", *stop_args, what="pg_ctl stop")

    def remove(self) -> None:
        """Delete every file of the cluster; stop it first."""
        shutil.rmtree(self.home, ignore_errors=True)
        link = self.state_dir / "postgres"
        if link.is_symlink():
            link.unlink()

    def _prepare_home(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not _is_root():
            return
        self.home.mkdir(mode=0o755, exist_ok=True)
        self.home.chmod(0o755)
        owner = _postgres_user()
        os.chown(self.home, owner.pw_uid, owner.pw_gid)
        link = self.state_dir / "postgres"
        if not link.is_symlink():
            link.symlink_to(self.home)

    def _initdb_args(self) -> list[str]:
        return [
            *("-D", str(self.data_dir)),
            *("-A", "trust"),
            *("-U", "postgres"),
            *("--encoding", "UTF8"),
            "--no-locale",
            "--no-sync",
        ]

    def _start_args(self, timeout: float) -> list[str]:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.home} {' '.join(SERVER_OPTIONS)}"
        return [
            "-w",
            *("-t", str(round(timeout))),
            *("-D", str(self.data_dir)),
            *("-l", str(self.log_path)),
            *("-o", options),
        ]

    def _run(self, program: Path, *args: str, what: str) -> None:
        command = [str(program), *args]
        if _is_root():
            command = [_runuser(), "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.home, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-4000:]
            message = f"{what} failed with code {result.returncode}\n{output}"
            raise RuntimeError(f"{message}\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def new_database(self, prefix: str) -> str:
        """Create an empty database of a fresh name (`prefix_` + 10 hex digits); its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=ROLE, dbname=DATABASE, autocommit=True
        ) as conn:
            conn.execute(f"create database {name} owner {ROLE}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def _create_role_and_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            role = conn.execute("select 1 from pg_roles where rolname = %s", (ROLE,))
            if role.fetchone() is None:
                conn.execute(f"create role {ROLE} superuser login")
            database = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,))
            if database.fetchone() is None:
                conn.execute(f"create database {DATABASE} owner {ROLE}")


def _is_root() -> bool:
    return os.geteuid() == 0


def _runuser() -> str:
    # root's PATH often lacks the sbin dirs (su without -, cron, some CI images).
    candidates = (shutil.which("runuser"), "/usr/sbin/runuser", "/sbin/runuser")
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("running as root needs runuser (util-linux) to run the server as postgres")


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root needs a 'postgres' user to run the server") from None


def _find_bin_dir() -> Path | None:
    versions = [p.parent for p in DEBIAN_PREFIX.glob("*/bin/pg_ctl")]
    if versions:
        return max(versions, key=lambda bin_dir: _major(bin_dir.parent.name))
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else 0


def _install_postgres() -> None:
    if not _is_root() or shutil.which("apt-get") is None:
        raise RuntimeError(
            "PostgreSQL is not installed: install the server package "
            "(apt-get install postgresql) or run as root on a Debian-like system"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed\n{result.stderr[-4000:]}")
