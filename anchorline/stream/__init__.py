"""The stream runtime: the one stage runner, Kafka transactions, delays, dead letters, codec."""
