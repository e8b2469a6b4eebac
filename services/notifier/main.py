"""Composition root of the notifier."""

from __future__ import annotations

from anchorline.settings import Settings
from anchorline.stream.runner import StageRunner
from anchorline_notifier.handler import NotifyHandler
from anchorline_notifier.sender import HttpSender


def build(settings: Settings) -> StageRunner:
    sender = HttpSender(timeout_s=settings.webhook_timeout_s, allowed=settings.webhook_networks)
    handler = NotifyHandler(
        sender, urls=settings.webhook_url_map, secrets=settings.webhook_secret_map
    )
    return StageRunner(handler, settings, service="notifier")
