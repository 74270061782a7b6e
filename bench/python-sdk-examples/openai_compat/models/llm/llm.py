import json
import math
from collections.abc import Generator, Mapping
from typing import Any

from dify_plugin import LargeLanguageModel
from dify_plugin.entities.model import AIModelEntity
from dify_plugin.entities.model.llm import LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessage,
    PromptMessageContentType,
    PromptMessageTool,
    ToolPromptMessage,
)
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeConnectionError, InvokeError

from models.common import CommonOpenAICompat, post_json, send

PARAMETERS = ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def chat_message(message: PromptMessage) -> dict:
    content: Any = message.content
    if isinstance(content, list):
        parts = []
        for part in content:
            if part.type == PromptMessageContentType.TEXT:
                parts.append({"type": "text", "text": part.data})
            elif part.type == PromptMessageContentType.IMAGE:
                url = part.url or (f"data:{part.mime_type or 'image/png'};base64,{part.base64_data}" if part.base64_data else "")
                if url:
                    detail = getattr(part, "detail", None)
                    parts.append({"type": "image_url", "image_url": {"url": url, "detail": getattr(detail, "value", detail) or "auto"}})
        content = parts
    out: dict[str, Any] = {"role": message.role.value, "content": content}
    if isinstance(message, AssistantPromptMessage) and message.tool_calls:
        out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if isinstance(message, ToolPromptMessage):
        out["tool_call_id"] = message.tool_call_id
    return out


class OpenAICompatLargeLanguageModel(CommonOpenAICompat, LargeLanguageModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> Generator[LLMResultChunk, None, None]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [chat_message(m) for m in prompt_messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        for key in PARAMETERS:
            if model_parameters.get(key) is not None:
                body[key] = model_parameters[key]
        if isinstance(model_parameters.get("response_format"), str):
            body["response_format"] = {"type": model_parameters["response_format"]}
        if tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in tools
            ]
        if stop:
            body["stop"] = stop
        prompt_estimate = self.get_num_tokens(model, credentials, prompt_messages, tools)
        # Sent here, not in the generator: the SDK maps errors raised by `_invoke` itself only.
        response = send("POST", credentials, "chat/completions", json_body=body, stream=stream)
        if stream:
            return self._stream(model, credentials, response, prompt_estimate)
        return self._whole(model, credentials, response, prompt_estimate)

    def _chunk(self, model: str, index: int, text="", tool_calls=None, usage=None, finish_reason=None, fingerprint=None):
        return LLMResultChunk(
            model=model,
            system_fingerprint=fingerprint,
            delta=LLMResultChunkDelta(
                index=index,
                message=AssistantPromptMessage(content=text, tool_calls=tool_calls or []),
                usage=usage,
                finish_reason=finish_reason,
            ),
        )

    def _usage(self, model: str, credentials: dict, api_usage: Any, prompt: int, completion: int):
        api_usage = api_usage if isinstance(api_usage, dict) else {}
        return self._calc_response_usage(
            model,
            credentials,
            int(api_usage.get("prompt_tokens", prompt)),
            int(api_usage.get("completion_tokens", completion)),
        )

    def _whole(self, model, credentials, response, prompt_estimate) -> Generator[LLMResultChunk, None, None]:
        # One chunk rather than an LLMResult: the SDK turns an LLMResult into a chunk without its
        # finish_reason.
        try:
            answer = response.json()
        except ValueError as e:
            raise InvokeConnectionError("the chat answer is not JSON") from e
        choice = (answer.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        calls = [AssistantPromptMessage.ToolCall(**c) for c in message.get("tool_calls") or []]
        usage = self._usage(model, credentials, answer.get("usage"), prompt_estimate, estimate_tokens(text))
        yield self._chunk(model, 0, text, calls, usage, choice.get("finish_reason") or "stop", answer.get("system_fingerprint"))

    def _stream(self, model, credentials, response, prompt_estimate) -> Generator[LLMResultChunk, None, None]:
        calls: list[dict] = []
        index = 0  # of the chunk sent next
        reason = "stop"
        api_usage = None
        completion = []
        fingerprint = None
        try:
            for raw in response.iter_lines():
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                fingerprint = event.get("system_fingerprint") or fingerprint
                if event.get("usage"):
                    api_usage = event["usage"]
                choices = event.get("choices") or []
                if not choices:
                    continue
                choice = choices[0]
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    completion.append(delta["content"])
                    yield self._chunk(model, index, delta["content"], fingerprint=fingerprint)
                    index += 1
                for piece in delta.get("tool_calls") or []:
                    index = piece.get("index", 0)
                    while len(calls) <= index:
                        calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                    call = calls[index]
                    if piece.get("id"):
                        call["id"] = piece["id"]
                    function = piece.get("function") or {}
                    call["function"]["name"] += function.get("name") or ""
                    call["function"]["arguments"] += function.get("arguments") or ""
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
        except InvokeError:
            raise
        except Exception as e:
            raise InvokeConnectionError(f"the chat stream broke: {type(e).__name__}") from e
        finally:
            response.close()
        if calls:
            yield self._chunk(model, index, "", [AssistantPromptMessage.ToolCall(**c) for c in calls], fingerprint=fingerprint)
            index += 1
        usage = self._usage(model, credentials, api_usage, prompt_estimate, estimate_tokens("".join(completion)))
        yield self._chunk(model, index, "", usage=usage, finish_reason=reason, fingerprint=fingerprint)

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        """An estimate: 3 per message plus a quarter of its characters, plus the tools' JSON."""
        count = sum(3 + estimate_tokens(m.get_text_content()) for m in prompt_messages)
        if tools:
            count += estimate_tokens(json.dumps([t.model_dump() for t in tools], separators=(",", ":"), ensure_ascii=False))
        return count

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5, "stream": False}
        try:
            post_json(credentials, "chat/completions", body)
        except InvokeError as e:
            raise CredentialsValidateFailedError(str(e)) from e

    def get_customizable_model_schema(self, model: str, credentials: Mapping) -> AIModelEntity | None:
        try:
            context_size = int(str(credentials.get("context_size") or "").strip())
        except ValueError:
            context_size = 4096
        features = ["tool-call", "multi-tool-call", "stream-tool-call"] if credentials.get("function_calling") == "yes" else []
        return AIModelEntity.model_validate(
            {
                "model": model,
                "label": {"en_US": model},
                "model_type": "llm",
                "fetch_from": "customizable-model",
                "features": features,
                "model_properties": {"mode": "chat", "context_size": context_size},
                "parameter_rules": [
                    {"name": "temperature", "use_template": "temperature"},
                    {"name": "top_p", "use_template": "top_p"},
                    {"name": "max_tokens", "use_template": "max_tokens", "default": 512, "min": 1, "max": context_size},
                ],
            }
        )
