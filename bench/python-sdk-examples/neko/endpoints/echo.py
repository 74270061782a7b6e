import json
from collections.abc import Mapping

from dify_plugin import Endpoint
from werkzeug import Request, Response


class Echo(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        try:
            body = json.loads(r.get_data())
        except ValueError as err:
            return Response(f"the body is not JSON: {err}", status=500)
        answer = {"method": r.method, "path": r.path, "query": r.args.get("q"), "hook": r.headers.get("dify-hook-id"),
                  "greeting": settings.get("greeting"), "body": body}
        return Response(json.dumps(answer), status=200, content_type="application/json")
