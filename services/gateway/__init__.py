"""The gateway service: the public REST API (chat, images, jobs, conversations).

It talks to the mllm over the OpenAI Chat Completions protocol, enqueues generation jobs
for the worker through Celery, and keeps conversations and job state in Redis. It never
imports torch, diffusers or transformers (tests/unit/test_gateway_imports.py).
"""
