from collections.abc import Mapping

from dify_plugin import Endpoint
from werkzeug import Request, Response


class Pond(Endpoint):
    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return Response(f"{values['ducks']} ducks in the pond", status=200, content_type="text/plain; charset=utf-8")
