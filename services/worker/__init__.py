"""The diffusion worker: a Celery worker process that loads one model profile once and runs
generation jobs (text-to-image so far) on it, recording every state change in Redis."""
