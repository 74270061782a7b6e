from dify_plugin import ModelProvider
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError

from models.common import endpoint, send


class OpenAICompatProvider(ModelProvider):
    def validate_provider_credentials(self, credentials: dict) -> None:
        """Lists the API's models; the SDK answers {"result": true, "credentials": <this dict>}."""
        if not credentials.get("api_key"):
            raise CredentialsValidateFailedError("an API key is required")
        try:
            send("GET", credentials, "models").close()
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
        # The SDK echoes the request's dict: normalise it in place, as the Rust example does.
        credentials["endpoint_url"] = endpoint(credentials)
