from collections.abc import Mapping

from dify_plugin import RerankModel
from dify_plugin.entities.model.rerank import RerankDocument, RerankResult
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError

from models.common import CommonOpenAICompat, post_json, send


class OpenAICompatRerankModel(CommonOpenAICompat, RerankModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        query: str,
        docs: list[str],
        score_threshold: float | None = None,
        top_n: int | None = None,
        user: str | None = None,
    ) -> RerankResult:
        """POST {endpoint}/rerank (Jina/Cohere style, as vLLM and Xinference serve it)."""
        body: dict = {"model": model, "query": query, "documents": docs}
        if top_n:
            body["top_n"] = top_n
        answer = post_json(credentials, "rerank", body)
        found = []
        for result in answer.get("results") or []:
            index = result.get("index")
            score = result.get("relevance_score")
            if isinstance(index, int) and 0 <= index < len(docs) and isinstance(score, int | float):
                found.append(RerankDocument(index=index, text=docs[index], score=float(score)))
        found.sort(key=lambda d: d.score, reverse=True)
        if score_threshold and score_threshold > 0:
            found = [d for d in found if d.score >= score_threshold]
        if top_n and top_n > 0:
            found = found[:top_n]
        return RerankResult(model=model, docs=found)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        try:
            send("GET", credentials, "models").close()
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e
