from collections.abc import Mapping

from dify_plugin import ModerationModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError

from models.common import CommonOpenAICompat, post_json, send


class OpenAICompatModerationModel(CommonOpenAICompat, ModerationModel):
    def _invoke(self, model: str, credentials: dict, text: str, user: str | None = None) -> bool:
        """True when the text is flagged (unsafe)."""
        answer = post_json(credentials, "moderations", {"model": model, "input": text})
        return any(r.get("flagged") is True for r in answer.get("results") or [])

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            send("GET", credentials, "models").close()
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
