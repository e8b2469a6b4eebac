from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from anchorline.errors import ConfigurationError
from anchorline.settings import Settings


def other_value(spec: dataclasses.Field[Any], default: Any) -> Any:
    """A value of the field's type that differs from its default."""
    if spec.name == "kafka_security_protocol":  # one of a few
        return "SASL_SSL"
    formed = {  # values with a form of their own
        "log_format": "text",
        "traces_exporter": "otlp,console",
        "blob_url": "s3://other-bucket/other/prefix",
        "webhook_urls": "acme=https://hooks.example/a",
        "webhook_secrets": "acme=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "webhook_private_networks": "10.0.0.0/8",
        "priority_weights": "high=8,normal=2,low=1",
        "priority_defaults": "acme=high",
    }
    if spec.name in formed:
        return formed[spec.name]
    kind = str(spec.type)
    if kind.startswith("int"):
        return default + 7
    if kind.startswith("float"):
        return default + 0.25
    if "Path" in kind:
        return Path("/srv/anchorline") / spec.name
    return f"{spec.name}-value"


def test_no_environment_means_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_values_are_read_from_prefixed_variables_and_typed() -> None:
    settings = Settings.from_env(
        {
            "ANCHORLINE_PARTITIONS": "6",
            "ANCHORLINE_TX_TIMEOUT_S": "2.5",
            "ANCHORLINE_STATE_DIR": "/srv/state",
            "ANCHORLINE_BLOB_DIR": "/srv/blobs",
            "ANCHORLINE_TOPIC_PREFIX": "staging",
            "PARTITIONS": "99",
            "ANCHORLINE_UNKNOWN": "ignored",
        }
    )
    assert settings.partitions == 6
    assert settings.tx_timeout_s == 2.5
    assert settings.state_dir == Path("/srv/state")
    assert settings.blob_dir == Path("/srv/blobs")
    assert settings.topic_prefix == "staging"


def test_an_empty_variable_keeps_the_default() -> None:
    settings = Settings.from_env({"ANCHORLINE_PARTITIONS": "", "ANCHORLINE_LOG_LEVEL": ""})
    assert (settings.partitions, settings.log_level) == (6, "INFO")


@pytest.mark.parametrize(
    ("name", "raw"),
    [("ANCHORLINE_PARTITIONS", "three"), ("ANCHORLINE_BATCH_MAX_WAIT_S", "soon")],
)
def test_a_malformed_number_is_a_configuration_error(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{name}='{raw}'"):
        Settings.from_env({name: raw})


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"ANCHORLINE_PARTITIONS": "6"}, partitions=1, http_port=9)
    assert (settings.partitions, settings.http_port) == (1, 9)


def test_the_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANCHORLINE_MAX_ATTEMPTS", "9")
    assert Settings.from_env().max_attempts == 9
    assert Settings.from_env({}).max_attempts == 4


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().partitions = 5  # type: ignore[misc]


def test_as_env_reproduces_every_setting() -> None:
    defaults = Settings()
    changed = {
        spec.name: other_value(spec, getattr(defaults, spec.name))
        for spec in dataclasses.fields(Settings)
    }
    settings = Settings(**changed)
    assert all(getattr(settings, name) != getattr(defaults, name) for name in changed)
    assert Settings.from_env(settings.as_env()) == settings


def test_as_env_leaves_out_what_is_unset() -> None:
    env = Settings().as_env()
    assert "ANCHORLINE_BLOB_DIR" not in env
    assert env["ANCHORLINE_PARTITIONS"] == "6"
    assert Settings.from_env(env) == Settings()


def test_topics_carry_the_prefix() -> None:
    topics = Settings(topic_prefix="staging").topics
    assert topics.jobs_requested == "staging.jobs.requested"
    assert topics.job_status == "staging.job.status"


def test_database_defaults_to_sqlite_in_the_state_dir(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).db_url == f"sqlite:///{tmp_path.resolve()}/anchorline.db"
    assert Settings(state_dir=tmp_path, database_url="postgresql://db/x").db_url == (
        "postgresql://db/x"
    )


def test_blobs_default_to_the_state_dir(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).blobs == tmp_path / "blobs"
    assert Settings(state_dir=tmp_path, blob_dir=Path("/srv/blobs")).blobs == Path("/srv/blobs")


@pytest.mark.parametrize("ladder", ["soon", "", "5,-1"])
def test_a_malformed_retry_ladder_is_a_configuration_error(ladder: str) -> None:
    with pytest.raises(ConfigurationError):
        _ = Settings(retry_delays_s=ladder).retry_ladder


def test_the_retry_ladder_sizes_the_delay_topics() -> None:
    settings = Settings(retry_delays_s="1, 2.5")
    assert settings.retry_ladder == (1.0, 2.5)
    assert settings.topics.retries("x") == ["x.retry.1", "x.retry.2"]


@pytest.mark.parametrize("name", ["COMMIT_DEADLINE_S", "SESSION_TIMEOUT_S", "SHUTDOWN_TIMEOUT_S"])
@pytest.mark.parametrize("raw", ["0", "-5"])
def test_a_deadline_at_or_below_zero_is_a_configuration_error(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"ANCHORLINE_{name} must be above 0"):
        Settings.from_env({f"ANCHORLINE_{name}": raw})


def test_an_unknown_kafka_security_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_SECURITY_PROTOCOL must be one of"):
        Settings.from_env({"ANCHORLINE_KAFKA_SECURITY_PROTOCOL": "SSL_PLAINTEXT"})


def test_sasl_needs_a_username() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_USERNAME is needed with SASL"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT")


def test_the_kafka_password_stays_out_of_the_settings_repr() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_username="verifier", kafka_password="pw-9x7"
    )
    assert "verifier" in repr(settings)
    assert "pw-9x7" not in repr(settings)


@pytest.mark.parametrize("name", ["max_blob_bytes", "max_job_body_bytes", "max_batch_body_bytes"])
def test_a_body_limit_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name.upper()):
        Settings(**{name: 0})


def test_blobs_stay_local_without_a_blob_url() -> None:
    assert Settings().s3_blobs is None


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://my-bucket", ("my-bucket", "")),
        ("s3://my-bucket/", ("my-bucket", "")),
        ("s3://my.bucket/blobs", ("my.bucket", "blobs/")),
        ("s3://abc/a//b/", ("abc", "a/b/")),
    ],
)
def test_a_blob_url_names_a_bucket_and_a_key_prefix(url: str, location: tuple[str, str]) -> None:
    assert Settings(blob_url=url).s3_blobs == location


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://ab",
        "s3://Upper",
        "s3://-bucket",
        "gs://bucket",
        "s3://b-b/a/../c",
        "s3://bbb/ a",
    ],
)
def test_a_malformed_blob_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="BLOB_URL must be s3://bucket/prefix"):
        Settings(blob_url=url)


@pytest.mark.parametrize("size", [(5 << 20) - 1, (5 << 30) + 1])
def test_an_s3_part_size_outside_what_s3_takes_is_a_configuration_error(size: int) -> None:
    with pytest.raises(ConfigurationError, match="S3_PART_SIZE"):
        Settings(s3_part_size=size)


def test_s3_keys_go_in_pairs_and_the_secret_stays_out_of_the_repr() -> None:
    with pytest.raises(ConfigurationError, match="go together"):
        Settings(s3_access_key_id="AKIDEXAMPLE")
    settings = Settings(s3_access_key_id="AKIDEXAMPLE", s3_secret_access_key="wJalrXUtnFEMI")
    assert "AKIDEXAMPLE" in repr(settings) and "wJalrXUtnFEMI" not in repr(settings)


def test_a_stage_time_limit_of_zero_is_none_and_below_zero_is_refused() -> None:
    assert Settings(verify_timeout_s=0).stage_timeout_s("verify") == 0
    assert Settings().stage_timeout_s("anchor") == 180
    with pytest.raises(ConfigurationError, match="ANCHORLINE_NOTIFY_TIMEOUT_S"):
        Settings(notify_timeout_s=-1)
