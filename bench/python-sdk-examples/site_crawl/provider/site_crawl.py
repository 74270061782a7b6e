from collections.abc import Mapping
from typing import Any

from dify_plugin.errors.tool import ToolProviderCredentialValidationError
from dify_plugin.interfaces.datasource import DatasourceProvider


class SiteCrawlDatasourceProvider(DatasourceProvider):
    def _validate_credentials(self, credentials: Mapping[str, Any]) -> None:
        if not str(credentials.get("access_token") or "").startswith("crawl-"):
            raise ToolProviderCredentialValidationError('the access token must start with "crawl-"')
