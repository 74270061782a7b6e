from collections.abc import Mapping
from typing import IO

from dify_plugin import Speech2TextModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError

from models.common import CommonOpenAICompat, send


class OpenAICompatSpeech2TextModel(CommonOpenAICompat, Speech2TextModel):
    def _invoke(self, model: str, credentials: dict, file: IO[bytes], user: str | None = None) -> str:
        response = send(
            "POST",
            credentials,
            "audio/transcriptions",
            files={"file": ("audio.mp3", file.read(), "audio/mpeg")},
            data={"model": model},
        )
        try:
            return str(response.json().get("text") or "")
        except ValueError as e:
            raise InvokeBadRequestError("the transcription answer is not JSON") from e

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            send("GET", credentials, "models").close()
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
