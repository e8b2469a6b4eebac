"""anchorline: verify, prove and anchor content on a Kafka pipeline."""
