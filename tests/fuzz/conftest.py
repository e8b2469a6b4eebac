from __future__ import annotations

from collections.abc import Iterator

import pytest
from system_under_test import System, running_system

from anchorline.infra.postgres import PostgresServer


@pytest.fixture(scope="session")
def fuzz_system(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[System]:
    """`anchorline up` of its own, whose retries are quick: a record the stages wrongly take for
    a transient failure still ends in a dead letter within the test's time."""
    with running_system(
        state_dir=tmp_path_factory.mktemp("fuzz"),
        database_url=postgres.new_database("fuzz"),
        batch_max_wait_s=0.5,
        retry_delays_s="0.2,0.5",
        max_attempts=2,
    ) as running:
        yield running
