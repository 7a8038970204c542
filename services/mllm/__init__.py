"""LLMGA mllm service: the multimodal LLM behind the OpenAI Chat Completions API.

Production runs vLLM (see :mod:`services.mllm.vllm_launch`); the local engine
(:mod:`services.mllm.engine`) serves a small text-only model with transformers on CPU.
"""
