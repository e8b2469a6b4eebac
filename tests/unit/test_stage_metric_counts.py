"""What a stage counts after a commit: records, and retries and dead letters by their topic."""

from __future__ import annotations

from prometheus_client import REGISTRY

from anchorline.stream.exactly_once import Outgoing
from anchorline.stream.metrics import StageMetrics
from anchorline.stream.topics import Topics


def value(name: str, stage: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0


def test_a_commit_counts_its_records_retries_dead_letters_and_failures() -> None:
    topics = Topics("m", retry_levels=2)
    source = topics.jobs_requested
    metrics = StageMetrics("unit-stage", topics=topics, source=source)
    names = ("processed", "retried", "dead_lettered", "failed")
    before = {n: value(f"anchorline_stage_{n}_total", "unit-stage") for n in names}
    outgoing = [
        Outgoing(topics.retry(source, 1), b"a", b""),
        Outgoing(topics.retry(source, 2), b"b", b""),
        Outgoing(topics.dead_letter(source), b"c", b""),
        Outgoing(topics.job_status, b"d", b""),
        Outgoing(topics.prove_requested, b"e", b""),
    ]
    metrics.committed(records=5, outgoing=outgoing, failed=1, seconds=0.02)
    after = {n: value(f"anchorline_stage_{n}_total", "unit-stage") for n in names}
    assert {n: after[n] - before[n] for n in names} == {
        "processed": 5,
        "retried": 2,
        "dead_lettered": 1,
        "failed": 1,
    }
    assert value("anchorline_stage_batch_size_count", "unit-stage") >= 1
    assert value("anchorline_stage_handler_seconds_sum", "unit-stage") >= 0.02


def test_a_stage_shows_its_counters_at_zero_before_anything_happened() -> None:
    topics = Topics("m", retry_levels=1)
    StageMetrics("quiet-stage", topics=topics, source=topics.jobs_requested)
    for name in ("processed", "failed", "retried", "dead_lettered"):
        sample = REGISTRY.get_sample_value(
            f"anchorline_stage_{name}_total", {"stage": "quiet-stage"}
        )
        assert sample == 0.0, name
