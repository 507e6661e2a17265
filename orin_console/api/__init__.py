"""The FastAPI server on the same core (seed routes, OpenAI-compatible routes, metrics)."""
