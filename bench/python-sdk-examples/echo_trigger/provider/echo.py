from dify_plugin.entities.trigger import EventDispatch, Subscription
from dify_plugin.interfaces.trigger import Trigger
from werkzeug import Request, Response


class EchoTrigger(Trigger):
    def _dispatch_event(self, subscription: Subscription, request: Request) -> EventDispatch:
        token = subscription.properties.get("token")
        if token and request.headers.get("x-echo-token") != token:
            return EventDispatch(events=[], response=Response('{"error":"bad token"}', status=401,
                                                              mimetype="application/json"))
        query = request.query_string.decode()
        payload = {"method": request.method, "path": request.path + ("?" + query if query else ""),
                   "body": request.get_data().decode("utf-8", "replace")}
        return EventDispatch(events=["ping"], response=Response("ok", status=200), payload=payload)
