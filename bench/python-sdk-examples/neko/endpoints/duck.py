from collections.abc import Mapping

from dify_plugin import Endpoint
from werkzeug import Request, Response


class Duck(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        app_id = values["app_id"]
        greeting = settings.get("greeting") or "quack"

        def body():
            yield f"{app_id} <br>"
            yield f"{greeting} <br>"
            yield "bye"

        return Response(body(), status=200, content_type="text/html")
