import math
import time
from collections.abc import Mapping

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import EmbeddingInputType, PriceType
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError

from models.common import CommonOpenAICompat, post_json


class OpenAICompatTextEmbeddingModel(CommonOpenAICompat, TextEmbeddingModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        answer = post_json(credentials, "embeddings", {"model": model, "input": texts, "encoding_format": "float"})
        data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
        embeddings = [[float(x) for x in d.get("embedding") or []] for d in data]
        if len(embeddings) != len(texts):
            raise InvokeBadRequestError(f"the API answered {len(embeddings)} embeddings for {len(texts)} texts")
        tokens = (answer.get("usage") or {}).get("total_tokens")
        if tokens is None:
            tokens = sum(self.get_num_tokens(model, credentials, texts))
        return TextEmbeddingResult(model=model, embeddings=embeddings, usage=self._usage(model, credentials, int(tokens)))

    def _usage(self, model: str, credentials: dict, tokens: int) -> EmbeddingUsage:
        price = self.get_price(model=model, credentials=credentials, price_type=PriceType.INPUT, tokens=tokens)
        return EmbeddingUsage(
            tokens=tokens,
            total_tokens=tokens,
            unit_price=price.unit_price,
            price_unit=price.unit,
            total_price=price.total_amount,
            currency=price.currency,
            latency=time.perf_counter() - self.started_at,
        )

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [math.ceil(len(text) / 4) for text in texts]

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            post_json(credentials, "embeddings", {"model": model, "input": ["ping"]})
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
