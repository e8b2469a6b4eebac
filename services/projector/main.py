"""Composition root of the projector."""

from __future__ import annotations

from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


def build(settings: Settings) -> Projector:
    """The real store on the configured database, its schema migrated first. Its connections
    are not pinged: a batch the database cut is applied again (_outlasting_outages), and the
    ping was one of a batch's round trips, each a wait on a busy machine."""
    engine = make_engine(settings.db_url, pre_ping=False)
    upgrade(engine)
    return Projector(settings, SqlJobStore(engine))


def rebuild_table(settings: Settings) -> str:
    """`anchorline projector rebuild`: the jobs table again, from the whole status topic."""
    from anchorline_projector.rebuild import rebuild

    engine = make_engine(settings.db_url)
    upgrade(engine)
    applied, skipped = rebuild(settings, SqlJobStore(engine))
    engine.dispose()
    return f"rebuilt {settings.db_url} from {applied} status events ({skipped} undecodable skipped)"
