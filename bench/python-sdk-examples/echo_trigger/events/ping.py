from collections.abc import Mapping
from typing import Any

from dify_plugin.entities.trigger import Variables
from dify_plugin.errors.trigger import EventIgnoreError
from dify_plugin.interfaces.trigger import Event
from werkzeug import Request


class Ping(Event):
    def _on_event(self, request: Request, parameters: Mapping[str, Any], payload: Mapping[str, Any]) -> Variables:
        wanted = parameters.get("method")
        if wanted and payload.get("method") != wanted:
            raise EventIgnoreError()
        return Variables(variables=dict(payload))
