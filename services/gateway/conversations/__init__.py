"""Conversations: read the turns of a chat."""
