"""Data: the canonical `Conversation` type, loading, tokenisation with assistant masks, and preparation."""

from chattune.data.conversation import ROLES, Conversation, Message

__all__ = ["ROLES", "Conversation", "Message"]
