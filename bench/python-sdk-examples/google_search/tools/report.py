from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

from tools.index import search


class ReportTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        query = tool_parameters["query"]
        found = search(query, 3)
        yield self.create_text_message(f"{len(found)} results for {query}")
        for title, _, _ in found:
            yield self.create_stream_variable_message("summary", title + "; ")
        yield self.create_variable_message("count", len(found))
        if found:
            yield self.create_link_message(found[0][1])
            yield self.create_image_message(found[0][1] + "/logo.png")
        csv = "".join(f"{t},{l}\n" for t, l, _ in found).encode()
        yield self.create_blob_message(csv, meta={"mime_type": "text/csv", "filename": "results.csv"})
