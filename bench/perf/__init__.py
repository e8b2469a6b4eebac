"""The parts of bench/throughput.py: stack, jobs, workloads, raw limit, table."""
