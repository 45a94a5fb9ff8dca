"""Every query and write of the service lives in this package; nothing else writes SQL."""

from .audit import read_audit
from .comments import NewComment, body_hash, email_lookups, ip_lookup, stored_address, url_host, author_delete, author_edit, author_view, create_comment
from .common import rfc3339, utcnow
from .keys import load_keys
from .maintenance import Upkeep, run_upkeep, take_lease
from .pages import list_pages, set_closed
from .people import erase_person, export_person
from .rotation import remaining, rotate_batch
from .queue import Change, bulk_status, change_comment, delete_comment, get_full, list_comments
from .rules import get_rules, put_rules
from .spam import DUPLICATE_MINUTES, Evidence
from .spam import evidence as spam_evidence
from .spam import prune as prune_spam_model
from .spam import train as train_spam
from .threads import counts, public_comment, read_thread, thread_version
from .tokens import TokenExists, authenticate, create_token, list_tokens, revoke_token

__all__ = [
    "DUPLICATE_MINUTES", "Evidence", "body_hash", "email_lookups", "ip_lookup", "prune_spam_model", "spam_evidence",
    "stored_address", "train_spam", "url_host",
    "Upkeep", "erase_person", "export_person", "read_audit", "remaining", "rotate_batch", "run_upkeep",
    "take_lease", "Change", "NewComment", "TokenExists", "author_delete", "author_edit", "author_view",
    "authenticate", "bulk_status", "change_comment", "counts", "create_comment", "create_token",
    "delete_comment", "get_full", "get_rules", "list_comments", "list_pages", "list_tokens",
    "load_keys", "public_comment", "put_rules", "read_thread", "revoke_token", "rfc3339",
    "set_closed", "thread_version", "utcnow",
]
