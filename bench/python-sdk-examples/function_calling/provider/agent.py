from dify_plugin.interfaces.agent import AgentProvider


class FunctionCallingAgentProvider(AgentProvider):
    pass
