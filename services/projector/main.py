"""Composition root of the projector."""

from __future__ import annotations

from anchorline.db import make_engine
from anchorline.migrate import upgrade
from anchorline.settings import Settings
from anchorline_projector.service import Projector
from anchorline_projector.store import SqlJobStore


def build(settings: Settings) -> Projector:
    """The real store on the configured database, its schema migrated first."""
    engine = make_engine(settings.db_url)
    upgrade(engine)
    return Projector(settings, SqlJobStore(engine))
