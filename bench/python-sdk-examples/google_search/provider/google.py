from typing import Any

from dify_plugin import ToolProvider
from dify_plugin.errors.tool import ToolProviderCredentialValidationError


class GoogleProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        if not str(credentials.get("serpapi_api_key") or "").startswith("serp-"):
            raise ToolProviderCredentialValidationError("the SerpApi API key is invalid")
