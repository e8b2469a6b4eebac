"""Tenant names: they name directories of the blob store and rows of the job store, so bounded."""

from __future__ import annotations

import re

from anchorline.errors import BadInput

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def is_tenant(value: object) -> bool:
    return isinstance(value, str) and TENANT_RE.fullmatch(value) is not None


def check_tenant(value: object) -> str:
    """`value` if it is a tenant name, else BadInput."""
    if not isinstance(value, str) or not TENANT_RE.fullmatch(value):
        raise BadInput(f"tenant must be {RULE}")
    return value
