from collections.abc import Generator, Mapping

from dify_plugin import TTSModel
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeConnectionError, InvokeError

from models.common import CommonOpenAICompat, send

# Audio bytes per chunk (hex doubles them on the wire).
CHUNK = 32 * 1024


class OpenAICompatText2SpeechModel(CommonOpenAICompat, TTSModel):
    def _invoke(
        self,
        model: str,
        tenant_id: str,
        credentials: dict,
        content_text: str,
        voice: str,
        user: str | None = None,
    ) -> Generator[bytes, None, None]:
        # A generator, never bytes: the SDK's TTSModel.invoke is itself a generator, so a `bytes`
        # returned here would be dropped (`return result` inside a generator) and no audio sent.
        body = {"model": model, "input": content_text, "voice": voice, "response_format": "mp3"}
        response = send("POST", credentials, "audio/speech", json_body=body, stream=True)
        return self._audio(response)

    @staticmethod
    def _audio(response) -> Generator[bytes, None, None]:
        try:
            for piece in response.iter_content(chunk_size=CHUNK):
                if piece:
                    yield piece
        except InvokeError:
            raise
        except Exception as e:
            raise InvokeConnectionError(f"the audio stream broke: {type(e).__name__}") from e
        finally:
            response.close()

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            send("GET", credentials, "models").close()
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
