"""The front door (`sale serve`): an OpenAI-compatible HTTP API that runs each request as a task
through the auction, the operator's dashboard, and Prometheus metrics, in one ASGI app."""
