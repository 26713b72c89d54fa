"""LLM backends behind the `agents.llm.LLM` protocol, and the one place that builds them."""

from __future__ import annotations

from agents.llm import LLM
from marketplace.shared.config import AgentConfig


def build(config: AgentConfig) -> LLM:
    """The backend an agent's config asks for. Heavy imports happen only for the one chosen."""
    if config.backend == "scripted":
        from agents.backends.scripted import ScriptedLLM

        return ScriptedLLM(model=config.model)
    if config.backend == "openai":
        from agents.backends.openai_http import OpenAIBackend

        return OpenAIBackend.from_config(config)
    from agents.backends.llama import LlamaBackend

    return LlamaBackend.from_config(config)
