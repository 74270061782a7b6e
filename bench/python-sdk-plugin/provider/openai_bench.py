"""Trigger provider: verifies each OpenAI webhook and says which events it fires."""

from collections.abc import Mapping
from typing import Any

from dify_plugin.entities.trigger import EventDispatch, Subscription
from dify_plugin.interfaces.trigger import Trigger
from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response

# Event names declared in provider/openai_bench.yaml (besides any_event). An OpenAI type with no
# declared event fires only any_event: Dify rejects a dispatch that names an undeclared event.
DECLARED_EVENTS = frozenset({"batch_completed", "batch_failed", "response_completed", "response_failed"})


def _json_response(status: int, body: str) -> Response:
    return Response(response=body, status=status, mimetype="application/json")


class OpenAIBenchTrigger(Trigger):
    def _dispatch_event(self, subscription: Subscription, request: Request) -> EventDispatch:
        secret = str(subscription.properties.get("webhook_secret") or "")
        try:
            # standardwebhooks checks the three webhook-* headers, the 5-minute timestamp window and
            # every "v1,<sig>" entry, then returns the JSON-decoded body.
            event: Any = Webhook(secret).verify(request.get_data(), request.headers)
        except WebhookVerificationError:
            return EventDispatch(events=[], response=_json_response(401, '{"error":"no_matching_signature"}'))
        except Exception:
            # empty or malformed secret, malformed signature header, body not UTF-8 or not JSON
            return EventDispatch(events=[], response=_json_response(401, '{"error":"invalid_request"}'))
        if not isinstance(event, Mapping):
            return EventDispatch(events=[], response=_json_response(400, '{"error":"invalid_payload"}'))

        name = str(event.get("type") or "").replace(".", "_")
        events = [name, "any_event"] if name in DECLARED_EVENTS else ["any_event"]
        return EventDispatch(events=events, response=_json_response(200, '{"status":"ok"}'), payload=event)
