"""The `function_calling` strategy, as `crates/dify-plugin/examples/function_calling.rs`.

Each round asks the workflow's model (a streamed `llm` backwards call, with the node's tools
offered as functions), streams its text, runs the tools it calls (`tool` backwards calls) and feeds
their answers back, until the model answers without calling a tool or `maximum_iterations` rounds
have run. Every round, model call and tool call is a log message; the run ends with the usage as
`execution_metadata`.
"""

import json
from collections.abc import Generator
from decimal import Decimal
from typing import Any

from dify_plugin.entities.agent import AgentInvokeMessage
from dify_plugin.entities.model.llm import LLMModelConfig
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessage,
    PromptMessageTool,
    SystemPromptMessage,
    ToolPromptMessage,
    UserPromptMessage,
)
from dify_plugin.entities.tool import ToolInvokeMessage, ToolProviderType
from dify_plugin.interfaces.agent import AgentModelConfig, AgentStrategy, ToolEntity

TOOL_FEATURES = {"tool-call", "multi-tool-call", "stream-tool-call"}
START = ToolInvokeMessage.LogMessage.LogStatus.START
SUCCESS = ToolInvokeMessage.LogMessage.LogStatus.SUCCESS


def observation(messages: list[ToolInvokeMessage]) -> str:
    """A tool's answer as the model reads it: its text, links and JSON, joined."""
    parts = []
    for m in messages:
        if m.type in (ToolInvokeMessage.MessageType.TEXT, ToolInvokeMessage.MessageType.LINK):
            parts.append(m.message.text)
        elif m.type == ToolInvokeMessage.MessageType.JSON:
            parts.append(json.dumps(m.message.json_object, separators=(",", ":"), ensure_ascii=False))
        elif m.type in (ToolInvokeMessage.MessageType.IMAGE, ToolInvokeMessage.MessageType.IMAGE_LINK):
            parts.append(f"image: {m.message.text}")
    return "\n".join(parts)


def calls_tools(model: AgentModelConfig) -> bool:
    """Whether the model's schema says it calls tools; true when Dify sent no schema."""
    if model.entity is None or model.entity.features is None:
        return True
    return any(getattr(f, "value", f) in TOOL_FEATURES for f in model.entity.features)


class FunctionCallingAgentStrategy(AgentStrategy):
    def _invoke(self, parameters: dict[str, Any]) -> Generator[AgentInvokeMessage, None, None]:
        for name in ("model", "query"):
            if parameters.get(name) in (None, ""):
                raise ValueError(f"the parameter `{name}` is required")
        model = AgentModelConfig.model_validate(parameters["model"])
        tools = [ToolEntity.model_validate(t) for t in parameters.get("tools") or []]
        query = str(parameters["query"])
        instruction = str(parameters.get("instruction") or "")
        rounds = min(max(int(float(parameters.get("maximum_iterations") or 3)), 1), 30)

        messages: list[PromptMessage] = []
        if instruction:
            messages.append(SystemPromptMessage(content=instruction))
        messages.extend(model.history_prompt_messages)
        messages.append(UserPromptMessage(content=query))
        offered = [self._convert_tool_to_prompt_message_tool(t) for t in tools] if calls_tools(model) else []
        model_config = LLMModelConfig(**model.model_dump(mode="json", exclude={"entity", "history_prompt_messages"}))
        tokens, price, currency = 0, Decimal(0), None

        for round_number in range(1, rounds + 1):
            round_log = self.create_log_message(label=f"ROUND {round_number}", data={}, status=START)
            yield round_log
            thought = self.create_log_message(label=f"{model.model} Thought", data={}, parent=round_log, status=START)
            yield thought
            # Tools are offered until the last round, which must answer.
            tools_now: list[PromptMessageTool] = offered if round_number < rounds else []
            text, tool_calls, usage = "", [], None
            for chunk in self.session.model.llm.invoke(
                model_config=model_config, prompt_messages=list(messages), tools=tools_now, stop=[], stream=True
            ):
                piece = chunk.delta.message.get_text_content()
                if piece:
                    text += piece
                    yield self.create_text_message(piece)
                tool_calls.extend(chunk.delta.message.tool_calls)
                if chunk.delta.usage:
                    usage = chunk.delta.usage
            if usage:
                tokens += usage.total_tokens
                price += usage.total_price
                currency = usage.currency
            yield self.finish_log_message(
                log=thought,
                data={
                    "output": text,
                    "tool_calls": [c.model_dump() for c in tool_calls],
                    "usage": usage.model_dump(mode="json") if usage else None,
                },
            )
            if not tool_calls:
                yield self.finish_log_message(log=round_log, data={"output": text})
                break
            messages.append(AssistantPromptMessage(content=text, tool_calls=tool_calls))
            for call in tool_calls:
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                    arguments = arguments if isinstance(arguments, dict) else {}
                except ValueError:
                    arguments = {}
                call_log = self.create_log_message(
                    label=f"CALL {call.function.name}", data={"tool_call_input": arguments}, parent=round_log, status=START
                )
                yield call_log
                tool = next((t for t in tools if t.identity.name == call.function.name), None)
                if tool is None:
                    result = f"there is no tool named {call.function.name}"
                else:
                    try:
                        answers = list(
                            self.session.tool.invoke(
                                provider_type=ToolProviderType(tool.provider_type),
                                provider=tool.identity.provider,
                                tool_name=tool.identity.name,
                                parameters={**arguments, **tool.runtime_parameters},
                                credential_id=tool.credential_id,
                            )
                        )
                        result = observation(answers)
                    except Exception as e:
                        result = f"the tool failed: {e}"
                yield self.finish_log_message(log=call_log, data={"output": result})
                messages.append(ToolPromptMessage(content=result, tool_call_id=call.id, name=call.function.name))
            yield self.finish_log_message(log=round_log, data={})

        yield self.create_json_message(
            {"execution_metadata": {"total_tokens": tokens, "total_price": float(price), "currency": currency or "USD"}}
        )
