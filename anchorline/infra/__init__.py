"""Launchers for the local infrastructure: Kafka, PostgreSQL and anvil, all on 127.0.0.1."""
