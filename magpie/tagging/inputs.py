"""The conversation a tagger reads: `magpie.conversation` (one reader for every stage)."""

from magpie.conversation import Conversation, conversation_of

__all__ = ["Conversation", "conversation_of"]
