"""The `anchorline` command."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Any

from confluent_kafka import KafkaException

from anchorline.cli import dlq as dlq_cli
from anchorline.cli import jobs as jobs_cli
from anchorline.cli import keys as keys_cli
from anchorline.cli import logs
from anchorline.cli import schedules as schedules_cli
from anchorline.cli import sign as sign_cli
from anchorline.cli.client import GatewayError
from anchorline.errors import ConfigurationError, IncompleteRead, Retryable
from anchorline.settings import Settings

EXIT_FORCED = 3
SERVICES = (
    "gateway",
    "verifier",
    "prover",
    "chain-writer",
    "projector",
    "notifier",
    "scheduler",
)


def stop_on_signals(*, deadline_s: float | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT; with a deadline, the process is ended that much later
    if it has not exited by itself (its uncommitted work goes back to Kafka)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()
        if deadline_s is not None:
            timer = threading.Timer(deadline_s, os._exit, args=(EXIT_FORCED,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


BUILDERS = {
    "verifier": "anchorline_verifier.main",
    "prover": "anchorline_prover.main",
    "chain-writer": "anchorline_chain_writer.main",
    "projector": "anchorline_projector.main",
    "notifier": "anchorline_notifier.main",
    "scheduler": "anchorline_scheduler.main",
}


def run_service(service: str, settings: Settings) -> int:
    """Run `settings.concurrency` workers of a service in one consumer group until SIGTERM."""
    if service == "gateway":
        from anchorline_gateway.main import serve

        serve(settings)  # uvicorn installs its own signal handlers
        return 0
    stop = stop_on_signals(deadline_s=settings.shutdown_timeout_s)
    build = importlib.import_module(BUILDERS[service]).build
    from anchorline.stream.metrics import serve as serve_metrics

    serve_metrics(settings.metrics_port, host=settings.http_host)
    workers = [build(settings) for _ in range(max(1, settings.concurrency))]
    failed = threading.Event()

    def work(worker: Any) -> None:
        try:
            worker.run(stop)
        except Exception:
            logging.getLogger(service).exception("%s worker failed; stopping the process", service)
            failed.set()
            stop.set()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 1 if failed.is_set() else 0


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("anchorline")
    except PackageNotFoundError:
        return "unknown (not installed)"


UP_TEXT = (
    "Start a Kafka broker, anvil and every service on this machine, each service as its own "
    "process (restarted if it dies), with the registry contract deployed, the topics created "
    "and the jobs database migrated. Ports and places come from ANCHORLINE_* settings "
    "(KAFKA_BOOTSTRAP, RPC_URL, HTTP_PORT, STATE_DIR, DATABASE_URL); `up` refuses to start "
    "when a port it needs is taken. Ctrl-C stops everything in order."
)
RUN_TEXT = (
    "Run one service in the foreground with the ANCHORLINE_* settings of this environment "
    "(ANCHORLINE_CONCURRENCY workers in one consumer group). SIGTERM drains and commits."
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="anchorline", description=__doc__)
    root.add_argument("--version", action="version", version=f"anchorline {version()}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up_cli = commands.add_parser(
        "up", help="start Kafka, anvil and every service locally", description=UP_TEXT
    )
    up_cli.add_argument(
        "--secure",
        action="store_true",
        help="SASL/SCRAM and ACLs on the broker, each service logged in as its own principal",
    )
    up_cli.add_argument(
        "--brokers",
        type=int,
        default=1,
        metavar="N",
        help="Kafka nodes (broker and controller each) in one quorum; topics get min(3, N) "
        "copies, 2 of 3 needed per write (default: 1)",
    )
    up_cli.add_argument(
        "--blobs",
        choices=("dir", "s3"),
        default="dir",
        help="s3: start S3Proxy and keep blobs in its bucket through the S3 API (default: dir)",
    )
    up_cli.add_argument(
        "--schema-registry",
        action="store_true",
        help="start Apicurio Registry; every service writes Confluent's wire format through it",
    )
    run = commands.add_parser("run", help="run one service in the foreground", description=RUN_TEXT)
    run.add_argument("service", choices=SERVICES, help="the service to run")
    for serving in (up_cli, run):
        serving.add_argument(
            "--log-format",
            choices=logs.FORMATS,
            help="json lines (the default for services) or text for people (ANCHORLINE_LOG_FORMAT)",
        )
    setup = commands.add_parser(
        "setup", help="install the Kafka and S3Proxy jars and anvil (and PostgreSQL)"
    )
    setup.add_argument("--postgres", action="store_true", help="also install PostgreSQL")
    setup.add_argument(
        "--browser", action="store_true", help="also install Chromium (the console's browser test)"
    )
    sign_cli.add_parser(commands)
    keys_cli.add_parser(commands)
    jobs_cli.add_parser(commands)
    schedules_cli.add_parser(commands)
    dlq_cli.add_parser(commands)
    from anchorline.cli import receipt as receipt_cli

    receipt_cli.add_parser(commands)
    projector = commands.add_parser("projector", help="jobs-table maintenance")
    projector.add_argument("verb", choices=["rebuild"], help="rebuild the table from the topic")
    commands.add_parser("topics", help="create the anchorline topics that are missing")
    commands.add_parser(
        "principals",
        help="as the operator, create every service's Kafka login and ACLs (secured brokers)",
    )
    commands.add_parser("migrate", help="bring the jobs database to the newest schema")
    deploy = commands.add_parser("deploy", help="deploy the registry contract, print its address")
    deploy.add_argument("--rpc", help="JSON-RPC URL (default: ANCHORLINE_RPC_URL)")
    deploy.add_argument(
        "--writer",
        action="append",
        default=[],
        help="an address allowed to anchor besides the deployer (ANCHORLINE_CHAIN_PRIVATE_KEY's)",
    )
    return root


def setup_logging(args: argparse.Namespace, settings: Settings) -> Settings:
    """Services (`run`, and `up` with its children) log JSON lines unless told `text`; the other
    commands, text for people, without librdkafka's own lines unless LOG_LEVEL is DEBUG (a broker
    that cannot be reached is one line from the command, not a line per connection attempt)."""
    serving = args.command in ("run", "up")
    chosen = getattr(args, "log_format", None) or settings.log_format
    fmt = chosen or ("json" if serving else "text")
    service = args.service if args.command == "run" else ("up" if serving else None)
    kafka_level = None if serving or settings.log_level.upper() == "DEBUG" else "CRITICAL"
    logs.configure(level=settings.log_level, fmt=fmt, service=service, kafka_level=kafka_level)
    return dataclasses.replace(settings, log_format=fmt) if serving else settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"anchorline: {exc}", file=sys.stderr)
        return 2
    settings = setup_logging(args, settings)
    try:
        return dispatch(args, settings)
    except (ConfigurationError, OSError) as exc:
        print(f"anchorline: {exc}", file=sys.stderr)
        return 2
    except (IncompleteRead, GatewayError, Retryable) as exc:  # Retryable: the schema registry
        print(f"anchorline: {exc}", file=sys.stderr)
        return 1
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc
        print(f"anchorline: Kafka at {settings.kafka_bootstrap}: {reason}", file=sys.stderr)
        return 1


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "run":
        return run_service(args.service, settings)
    elif args.command == "up":
        from anchorline.cli.up import up

        up(
            settings,
            stop_on_signals(),
            secured=args.secure,
            s3=args.blobs == "s3",
            schema_registry=args.schema_registry,
            brokers=args.brokers,
        )
    elif args.command == "setup":
        from anchorline.infra.setup import install

        install(postgres=args.postgres, browser=args.browser)
    elif args.command == "sign":
        return sign_cli.run(args, settings)
    elif args.command == "keys":
        return keys_cli.run(args)
    elif args.command in ("submit", "jobs"):
        return jobs_cli.run(args, settings)
    elif args.command == "schedules":
        return schedules_cli.run(args, settings)
    elif args.command == "dlq":
        return dlq_cli.run(args, settings)
    elif args.command == "receipt":
        from anchorline.cli import receipt as receipt_cli

        return receipt_cli.run(args, settings)
    elif args.command == "projector":
        from anchorline_projector.main import rebuild_table

        print(rebuild_table(settings))
    elif args.command == "principals":
        from anchorline.cli.credentials import Logins, provision
        from anchorline.stream.access import PRINCIPALS

        logins = Logins.load_or_create(settings.state_dir, PRINCIPALS)
        provision(settings, logins)
        print(f"logins of {', '.join(PRINCIPALS)} (0600) in {logins.directory}")
    elif args.command == "topics":
        from anchorline.stream.kafka import ensure_topics

        for name in ensure_topics(settings):
            print(f"created {name}")
    elif args.command == "migrate":
        from anchorline.store.db import make_engine
        from anchorline.store.migrate import upgrade

        upgrade(make_engine(settings.db_url))
    elif args.command == "deploy":
        from anchorline.infra.anvil import DEV_PRIVATE_KEYS
        from anchorline.proof.registry import deploy_registry

        key = settings.chain_private_key or DEV_PRIVATE_KEYS[0]
        print(deploy_registry(args.rpc or settings.rpc_url, key, writers=args.writer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
