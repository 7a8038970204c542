"""OpenAI's Images API on the gateway: generations, edits, variations."""
