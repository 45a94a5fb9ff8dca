"""comments: a self-hosted comment-moderation backend for "Leave a Reply" forms."""

__version__ = "0.1.0"
