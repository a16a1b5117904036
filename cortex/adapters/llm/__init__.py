"""LLM providers: scripted, OpenAI-compatible, Anthropic, local llama.cpp."""
