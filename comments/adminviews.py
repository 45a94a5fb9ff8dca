"""What the moderators' page shows: the statuses and actions by name, one comment as the template
sees it, the rules form field by field, and what a bulk change did, in a sentence."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup
from starlette.datastructures import FormData

from . import store
from .adminguard import list_url
from .models import Rules
from .store import guarded

LABELS = {"pending": "Pending", "approved": "Approved", "spam": "Spam", "trash": "Trash"}
# Each action and the status it moves a comment to (None: back to the status it had before).
ACTIONS: dict[str, str | None] = {"approve": "approved", "unapprove": "pending", "spam": "spam",
                                  "notspam": None, "trash": "trash", "restore": None}
ACTION_LABELS = {"approve": "Approve", "unapprove": "Unapprove", "spam": "Spam", "notspam": "Not spam",
                 "trash": "Trash", "restore": "Restore", "delete": "Delete for good"}
OFFERED = {"pending": ("approve", "spam", "trash"), "approved": ("unapprove", "spam", "trash"),
           "spam": ("notspam", "approve", "trash", "delete"), "trash": ("restore", "spam", "delete")}
DONE = {"approved": "Approved", "pending": "Moved to Pending", "spam": "Marked as spam",
        "trash": "Moved to the Trash"}
RULE_LABELS = {
    "moderation": "Moderation",
    "moderation_words": "Hold for moderation a comment that contains any of these words (one a line)",
    "blocked_words": "File as spam a comment that contains any of these words (one a line)",
    "max_links": "Hold a comment with more links than",
    "auto_approve_known_authors": "Publish at once when the author already has an approved comment",
    "flood_seconds": "Least time between two comments from one address or email (seconds)",
    "edit_window_seconds": "How long authors may edit their comments (seconds)",
    "spam_threshold": "File as spam when the spam filter's score reaches (0 to 1)",
    "hold_threshold": "Hold for moderation when the spam filter's score reaches (0 to 1)",
}


def article_url(page: str, origins: tuple[str, ...]) -> str | None:
    """The article a page key names: a path on the first site origin, or a URL on a listed origin."""
    if page.startswith("/") and not page.startswith("//") and origins:
        return origins[0] + page
    if page.lower().startswith(("http://", "https://")):
        parts = urlsplit(page)
        if f"{parts.scheme.lower()}://{parts.netloc.lower()}" in origins:
            return page
    return None


def time_view(moment: datetime) -> dict[str, str]:
    return {"iso": store.rfc3339(moment), "text": moment.strftime("%Y-%m-%d %H:%M UTC")}


def item_view(c: dict[str, Any], parents: dict[int, dict[str, str]], origins: tuple[str, ...]) -> dict[str, Any]:
    """What the page shows of one comment (every string is escaped by the template but body_html,
    which the sanitiser made)."""
    url = c["url"] if c["url"] and str(c["url"]).lower().startswith(("http://", "https://")) else None
    agent = c.get("user_agent") or ""
    return {
        "id": c["id"], "status": c["status"], "author": c["author"], "email": c["email"], "url": url,
        "ip": c["ip"], "agent": agent[:120], "page": c["page"], "article": article_url(c["page"], origins),
        "page_filter": list_url(status=c["status"], page=c["page"]), "created": time_view(c["created_at"]),
        "body_html": Markup(c["body_html"]), "body": c.get("body") or "",
        "score": f"{float(c['spam_score']):.2f}", "high": float(c["spam_score"]) >= 0.5,
        "reasons": list(c["spam_reasons"] or []),
        "parent": {"id": c["parent"], **parents[c["parent"]]} if c["parent"] in parents else None,
        "actions": [(a, ACTION_LABELS[a]) for a in OFFERED[c["status"]]],
        "replyable": c["status"] in ("pending", "approved"),
    }


def rules_from_form(form: FormData) -> dict[str, Any]:
    """The posted rules form as the JSON shape forms.rules_in checks (bad numbers stay strings, so it names them)."""
    defaults = Rules()
    data: dict[str, Any] = {}
    for name in Rules.model_fields:
        default, raw = getattr(defaults, name), form.get(name)
        text = raw.strip() if isinstance(raw, str) else ""
        if isinstance(default, bool):
            data[name] = text in ("on", "true", "1")
        elif isinstance(default, int):
            data[name] = int(text) if text.isdigit() and len(text) < 10 else text
        elif isinstance(default, float):
            try:
                data[name] = float(text)
            except ValueError:
                data[name] = text
        elif isinstance(default, list):
            data[name] = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            data[name] = text
    return data


def rule_fields(values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    """The rules form, field by field (fields added to Rules later appear with a plain label)."""
    result = []
    defaults = Rules()
    for name in Rules.model_fields:
        default, value = getattr(defaults, name), values.get(name)
        kind = ("checkbox" if isinstance(default, bool) else "number" if isinstance(default, (int, float))
                else "lines" if isinstance(default, list) else "choice" if name == "moderation" else "text")
        if isinstance(value, list):
            value = "\n".join(value)
        result.append({"name": name, "kind": kind, "value": value, "error": errors.get(name),
                       "step": "any" if isinstance(default, float) else "1",
                       "label": RULE_LABELS.get(name, name.replace("_", " ").capitalize())})
    return result


def bulk_message(result: guarded.BulkResult) -> str:
    """One sentence on what a bulk change did, and what it left alone."""
    moved_to = {to for _, _, to in result.changed}
    count = len(result.changed)
    where = DONE[next(iter(moved_to))] if len(moved_to) == 1 else "Moved"
    parts = [f"{where}: {count} comment{'s' if count != 1 else ''}."]
    if result.moved:
        parts.append(f"{len(result.moved)} had already been moved by someone else and were left alone.")
    if result.missing:
        parts.append(f"{len(result.missing)} no longer exist.")
    return " ".join(parts)
