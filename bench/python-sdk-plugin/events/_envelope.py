"""Shared by the event classes: turn the payload stored by dispatch into workflow variables."""

from collections.abc import Mapping
from typing import Any

from dify_plugin.entities.trigger import Variables
from dify_plugin.errors.trigger import EventIgnoreError

ENVELOPE_KEYS = ("id", "object", "created_at", "type", "data")


def envelope_variables(payload: Mapping[str, Any], expected_type: str | None) -> Variables:
    """The event envelope as variables; EventIgnoreError (=> cancelled) if it is not the expected type."""
    if not payload:
        raise EventIgnoreError("empty payload")
    if expected_type is not None and payload.get("type") != expected_type:
        raise EventIgnoreError(f"expected {expected_type}, got {payload.get('type')!r}")
    return Variables(variables={k: payload[k] for k in ENVELOPE_KEYS if k in payload})
