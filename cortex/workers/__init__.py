"""Worker pools by action type: llm, tool, agent, workflow, relic."""
