"""The OpenAI-compatible routes: `POST /v1/chat/completions` and `GET /v1/models`."""
