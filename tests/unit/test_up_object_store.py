"""`anchorline up --blobs s3` and `--schema-registry`: where their servers listen."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorline.cli.up import local_object_store, local_schema_registry
from anchorline.errors import ConfigurationError
from anchorline.settings import Settings


def test_by_default_the_bucket_is_anchorline_on_port_9000_with_new_keys(tmp_path: Path) -> None:
    server, settings = local_object_store(Settings(state_dir=tmp_path))
    assert server.endpoint == settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_blobs == ("anchorline", "blobs/")
    assert (server.access_key, server.secret_key) == (
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
    )
    assert len(settings.s3_secret_access_key) >= 32
    _, again = local_object_store(Settings(state_dir=tmp_path))
    assert again.s3_secret_access_key != settings.s3_secret_access_key
    assert server.state_dir == (tmp_path / "s3proxy").resolve()


def test_what_the_settings_give_is_kept(tmp_path: Path) -> None:
    given = Settings(
        state_dir=tmp_path,
        blob_url="s3://mine/here",
        s3_endpoint_url="http://localhost:19000",
        s3_access_key_id="key",
        s3_secret_access_key="secret",
    )
    server, settings = local_object_store(given)
    assert (server.port, settings.s3_endpoint_url) == (19000, "http://127.0.0.1:19000")
    assert settings.s3_blobs == ("mine", "here/")
    assert (server.access_key, server.secret_key) == ("key", "secret")


@pytest.mark.parametrize("endpoint", ["https://s3.amazonaws.com", "http://10.0.0.5:9000"])
def test_it_serves_only_this_machine(tmp_path: Path, endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match=r"serves 127\.0\.0\.1"):
        local_object_store(Settings(state_dir=tmp_path, s3_endpoint_url=endpoint))


def test_up_s_schema_registry_listens_where_the_setting_says(tmp_path: Path) -> None:
    server, settings = local_schema_registry(Settings(state_dir=tmp_path))
    assert settings.schema_registry_url == "http://127.0.0.1:8081/apis/ccompat/v7"
    given = Settings(state_dir=tmp_path, schema_registry_url="http://localhost:18081")
    server, settings = local_schema_registry(given)
    assert server.port == 18081
    assert settings.schema_registry_url == "http://127.0.0.1:18081/apis/ccompat/v7"
    with pytest.raises(ConfigurationError, match="up --schema-registry serves"):
        local_schema_registry(Settings(state_dir=tmp_path, schema_registry_url="http://sr:8081"))
