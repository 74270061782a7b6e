from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from tools.index import search


class GoogleSearchTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        query = tool_parameters["query"]
        num = int(tool_parameters.get("num") or 3)
        results = [{"title": t, "link": l, "snippet": s} for t, l, s in search(query, num)]
        yield self.create_json_message({"query": query, "organic_results": results})
