"""`anchorline setup`: everything the local run and the tests need that pip does not bring."""

from __future__ import annotations

from anchorline.infra.anvil import ensure_node_tools
from anchorline.infra.apicurio import ensure_apicurio
from anchorline.infra.java import NoJava
from anchorline.infra.kafka import ensure_kafka_jars
from anchorline.infra.postgres import ensure_postgres_installed
from anchorline.infra.s3proxy import ensure_s3proxy_jars


def install(*, postgres: bool) -> None:
    print(f"Kafka jars in {ensure_kafka_jars()}", flush=True)
    print(f"S3Proxy jars in {ensure_s3proxy_jars()}", flush=True)
    try:
        print(f"Apicurio Registry in {ensure_apicurio()}", flush=True)
    except NoJava as exc:  # only the schema registry's tests need it
        print(f"Apicurio Registry left out: {exc}", flush=True)
    print(f"anvil and solc in {ensure_node_tools()}", flush=True)
    if postgres:
        print(f"PostgreSQL binaries in {ensure_postgres_installed()}", flush=True)
