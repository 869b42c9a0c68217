"""HTTP: the OpenAI-compatible Images API, health, metrics. Knows nothing of how models run."""
