"""The mllm as the gateway uses it: the async OpenAI client, the calls the areas share
(with their metrics), and the generation tags of its replies."""
