"""The `anchorline` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from anchorline.cli import dlq as dlq_cli
from anchorline.errors import ConfigurationError, IncompleteRead
from anchorline.settings import Settings

EXIT_FORCED = 3
SERVICES = ("gateway", "verifier", "prover", "chain-writer", "projector", "notifier")


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


def quiet_per_request_loggers() -> None:
    """httpx logs every request at INFO: a line per job in the verifier. Its warnings remain,
    and at LOG_LEVEL=DEBUG everything."""
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


BUILDERS = {
    "verifier": "anchorline_verifier.main",
    "prover": "anchorline_prover.main",
    "chain-writer": "anchorline_chain_writer.main",
    "projector": "anchorline_projector.main",
    "notifier": "anchorline_notifier.main",
}


def run_service(service: str, settings: Settings) -> int:
    """Run `settings.concurrency` workers of a service in one consumer group until SIGTERM."""
    if service == "gateway":
        from anchorline_gateway.main import serve

        serve(settings)  # uvicorn installs its own signal handlers
        return 0
    stop = stop_on_signals(deadline_s=settings.shutdown_timeout_s)
    build = importlib.import_module(BUILDERS[service]).build
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="anchorline", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    up_cli = commands.add_parser("up", help="start Kafka, anvil and every service locally")
    up_cli.add_argument(
        "--secure",
        action="store_true",
        help="SASL/SCRAM and ACLs on the broker, each service logged in as its own principal",
    )
    run = commands.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", choices=SERVICES)
    setup = commands.add_parser("setup", help="install the Kafka jars and anvil (and PostgreSQL)")
    setup.add_argument("--postgres", action="store_true", help="also install PostgreSQL")
    sign = commands.add_parser("sign", help="write a manifest for a file and sign it")
    sign.add_argument("file", type=Path)
    sign.add_argument("--key", help="creator's private key (default: a new random key)")
    sign.add_argument("--out", type=Path, default=Path("."), help="folder for manifest.json/.sig")
    sign.add_argument(
        "--scheme", choices=("eip191", "eip712"), default="eip191", help="signature scheme"
    )
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
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"anchorline: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_per_request_loggers()
    try:
        return dispatch(args, settings)
    except (ConfigurationError, OSError) as exc:
        print(f"anchorline: {exc}", file=sys.stderr)
        return 2
    except IncompleteRead as exc:
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

        up(settings, stop_on_signals(), secured=args.secure)
    elif args.command == "setup":
        from anchorline.infra.setup import install

        install(postgres=args.postgres)
    elif args.command == "sign":
        from anchorline.proof.manifest import write_signed

        creator = write_signed(args.file, key=args.key, out=args.out, scheme=args.scheme)
        print(f"signed by {creator}: {args.out / 'manifest.json'} {args.out / 'manifest.sig'}")
        print(f"submit it with signature_scheme={args.scheme}")
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
        print(deploy_registry(args.rpc or settings.rpc_url, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
