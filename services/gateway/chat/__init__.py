"""Chat: talk to the MLLM, which may start generation jobs."""
