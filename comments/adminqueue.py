"""The queue of the moderators' web page: the comments of one status, and what a moderator does to them."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import forms, sanitize, store
from .adminguard import Refused, Visit, back_url, list_url
from .adminviews import ACTION_LABELS, ACTIONS, DONE, LABELS, OFFERED, bulk_message, item_view
from .errors import ApiError, validation_error
from .http import json_response
from .models import STATUSES
from .security import decode_cursor, encode_cursor
from .service import Service
from .store import guarded

if TYPE_CHECKING:
    from .adminweb import AdminWeb

MAX_BULK = 1000
PAGE_SIZE = 50  # comments listed on one screen


class QueuePage:
    """The handlers of /admin, /admin/bulk and /admin/comments/..., rendering through the shared page."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def show(self, v: Visit) -> Response:
        """One screen of the queue: a status, optionally one page's comments or a search."""
        query = v.request.query_params
        status = query.get("status") or "pending"
        page = query.get("page") if (query.get("page") or "").strip() else None
        text = (query.get("q") or "").strip() or None
        errors = {}
        if status not in STATUSES:
            errors["status"] = "must be one of " + ", ".join(STATUSES)
        if page is not None and len(page) > 1024:
            errors["page"] = "must be 1 to 1024 characters"
        if text is not None and len(text) > 200:
            errors["q"] = "must be at most 200 characters"
        if errors:
            raise validation_error(errors)
        limit = forms.query_limit(query.get("limit"), PAGE_SIZE)
        context = await run_in_threadpool(self._data, v.service, status, page, text, limit, query.get("cursor"))
        return self.web.page_with_flash(v, "admin_queue.html", section="queue", tab=status, **context)

    def _data(self, service: Service, status: str, page: str | None, text: str | None, limit: int,
              cursor: str | None) -> dict[str, Any]:
        after = None
        if cursor:
            moment, last_id, kind = decode_cursor(service.keys, cursor, 3)
            if kind != status or not isinstance(moment, str) or not isinstance(last_id, int):
                raise ApiError(400, "cursor: not a cursor for this list")
            try:
                after = (datetime.fromisoformat(moment), last_id)
            except ValueError:
                raise ApiError(400, "cursor: not a cursor this service made") from None
        listing = store.list_comments(service.db, status, page, text, limit, after)
        parents = guarded.parent_openings(service.db, [c["parent"] for c in listing.items if c["parent"]])
        later = None
        if listing.next_key is not None:
            made = encode_cursor(service.keys, [listing.next_key[0].isoformat(), listing.next_key[1], status])
            later = list_url(status=status, page=page, q=text, cursor=made)
        here = {"status": status, "page": page, "q": text, "cursor": cursor,
                "limit": limit if limit != PAGE_SIZE else None}
        return {
            "status": status, "page": page, "q": text, "labels": LABELS, "action_labels": ACTION_LABELS,
            "items": [item_view(c, parents, self.web.settings.site_origins) for c in listing.items],
            "tabs": [{"status": s, "label": LABELS[s], "count": listing.counts[s], "current": s == status,
                      "url": list_url(status=s, page=page, q=text)} for s in STATUSES],
            "bulk_actions": [a for a in OFFERED[status] if a != "delete"],
            "back": urlencode({k: v for k, v in here.items() if v}),
            "next_url": later, "first_url": list_url(status=status, page=page, q=text) if cursor else None,
            "clear_url": list_url(status=status),
        }

    async def act(self, v: Visit) -> Response:
        """One action on one comment; deleting for good asks first."""
        comment_id = _comment_id(v)
        expected = _expected(v)
        back = back_url(v.field("back"))
        actor, now, db = v.session.name, store.utcnow(), v.service.db
        if v.field("action") == "delete":
            if v.field("confirm") != "yes":
                return self.web.page(v, "admin_confirm.html", comment_id=comment_id, from_status=expected or "",
                                     back=back, back_query=v.field("back") or "")
            was = await _checked(run_in_threadpool(guarded.delete_seen, db, comment_id, expected, actor, now),
                                 comment_id, expected)
            return self.web.done(v, back, f"Deleted comment #{comment_id} for good.", [],
                                 id=comment_id, **{"from": was, "to": None})
        target = _target(v)
        undo = v.field("action") == "status"  # only Undo posts an explicit status
        was, now_status = await _checked(
            run_in_threadpool(guarded.set_status, db, comment_id, target, expected, actor, now, undo),
            comment_id, expected)
        if was == now_status:
            message = f"Comment #{comment_id} was already in {LABELS[was]}; nothing changed."
            offer: list[dict[str, Any]] = []
        else:
            message = f"{DONE[now_status]}: comment #{comment_id}."
            offer = [{"ids": [comment_id], "to": was, "from_status": now_status}]
        return self.web.done(v, back, message, offer, id=comment_id, **{"from": was, "to": now_status})

    async def bulk(self, v: Visit) -> Response:
        """One action on the selected comments (not deleting), with one Undo per status they came from."""
        assert v.form is not None
        raw = [x for x in v.form.getlist("ids") if isinstance(x, str)]
        ids = [forms.parse_id(x) for x in raw]
        if not ids or len(ids) > MAX_BULK or any(i is None for i in ids):
            raise validation_error({"ids": f"select 1 to {MAX_BULK} comments"})
        if v.field("action") == "delete":
            raise validation_error({"action": "delete comments one at a time"})
        target, expected = _target(v), _expected(v)
        unique = list(dict.fromkeys(i for i in ids if i is not None))
        result = await run_in_threadpool(guarded.set_status_many, v.service.db, unique, target, expected,
                                         v.session.name, store.utcnow(), v.field("action") == "status")
        groups: dict[tuple[str, str], list[int]] = {}
        for comment_id, was, now_status in result.changed:
            if was != now_status:
                groups.setdefault((was, now_status), []).append(comment_id)
        undo = [{"ids": ids_, "to": was, "from_status": to} for (was, to), ids_ in groups.items()]
        return self.web.done(v, back_url(v.field("back")), bulk_message(result), undo,
                             changed=result.changed, moved=result.moved, missing=result.missing)

    async def edit(self, v: Visit) -> Response:
        """Save a moderator's edit of a comment; admin.js gets the comment's new HTML back."""
        comment_id = _comment_id(v)
        data = {k: v.field(k) for k in ("body", "author", "url") if v.field(k) is not None}
        errors: dict[str, str] = {}
        checked = forms.validated_edit(data, v.service.settings.max_body_chars, errors)
        if errors:
            raise validation_error(errors)
        comment = await _checked(run_in_threadpool(v.service.edit_by_moderator, comment_id,
                                                   store.Change(**checked), v.session.name), comment_id, None)
        message = f"Saved comment #{comment_id}."
        if not v.wants_json:
            return self.web.done(v, back_url(v.field("back")), message, [])
        html = await run_in_threadpool(self._item_html, v, comment)
        return json_response({"message": message, "id": comment_id, "html": html})

    def _item_html(self, v: Visit, comment: dict[str, Any]) -> str:
        parents = guarded.parent_openings(v.service.db, [comment["parent"]] if comment["parent"] else [])
        view = item_view(comment, parents, self.web.settings.site_origins)
        return self.web.env.get_template("admin_item.html").render(c=view, csrf=v.csrf, back=v.field("back") or "",
                                                                 moderator=v.session.name)

    async def reply(self, v: Visit) -> Response:
        """Publish the moderator's reply to a comment as the site (approving the comment if it was pending)."""
        comment_id = _comment_id(v)
        expected = _expected(v)
        errors: dict[str, str] = {}
        checked = forms.validated_edit({"body": v.field("body"), "author": v.field("author") or v.session.name},
                                       v.service.settings.max_body_chars, errors)
        if errors:
            raise validation_error(errors)
        made = await _checked(run_in_threadpool(_publish_reply, v.service, comment_id, expected, checked["body"],
                                                checked["author"], v.session.name), comment_id, expected)
        message = f"Published your reply #{made['id']} to comment #{comment_id}."
        if made["parent_was"] == "pending":
            message += f" Comment #{comment_id} is approved now."
        return self.web.done(v, back_url(v.field("back")), message, [], id=comment_id, reply=made["id"],
                             **{"from": made["parent_was"], "to": "approved"})


def _comment_id(v: Visit) -> int:
    comment_id = forms.parse_id(v.request.path_params["comment_id"])
    if comment_id is None:
        raise ApiError(404, "There is no such comment. Nothing was changed.")
    return comment_id


def _expected(v: Visit) -> str | None:
    seen = v.field("from_status") or None
    if seen is not None and seen not in STATUSES:
        raise validation_error({"from_status": "must be one of " + ", ".join(STATUSES)})
    return seen


def _target(v: Visit) -> str | None:
    action = v.field("action") or ""
    if action == "status":
        to = v.field("to")
        if to not in STATUSES:
            raise validation_error({"to": "must be one of " + ", ".join(STATUSES)})
        return to
    if action not in ACTIONS:
        raise validation_error({"action": "must be one of " + ", ".join([*ACTIONS, "delete", "status"])})
    return ACTIONS[action]


async def _checked(call: Awaitable[Any], comment_id: int, seen: str | None) -> Any:
    """Await a store call about one comment; a missing or moved comment becomes a message naming it."""
    try:
        return await call
    except guarded.Moved as exc:
        where = LABELS.get(seen or "", "where you saw it")
        raise Refused(409, f"Comment #{comment_id} is no longer in {where}: someone else already moved it to "
                           f"{LABELS[exc.current]}. Nothing was changed.", current=exc.current, id=comment_id) from None
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f"Comment #{comment_id} does not exist (it may have been deleted for good). "
                           "Nothing was changed.") from None
        raise


def _publish_reply(service: Service, parent: int, expected: str | None, body: str, author: str,
                   actor: str) -> dict[str, Any]:
    """Sanitise the moderator's reply like any comment, then publish it as the site."""
    html = sanitize.render(body)
    reply = guarded.SiteReply(parent, expected, author, body, html, sanitize.POLICY_VERSION)
    return guarded.site_reply(service.db, reply, actor, store.utcnow())
