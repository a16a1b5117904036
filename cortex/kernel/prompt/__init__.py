"""The versioned system prompt that teaches the model the Cortex protocol."""

from cortex.kernel.prompt.render import PROMPT_VERSIONS, render_system_prompt

__all__ = ["PROMPT_VERSIONS", "render_system_prompt"]
