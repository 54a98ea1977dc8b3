"""litegate: a small, stateless LLM gateway on Twisted."""
