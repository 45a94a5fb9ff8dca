"""The settings page of the moderators' web page: the moderation rules, the pages open or closed, the tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from . import forms, store
from .adminguard import Visit, back_url, list_url
from .adminviews import LABELS, article_url, rule_fields, rules_from_form, time_view
from .errors import ApiError, validation_error
from .models import STATUSES
from .security import decode_id_cursor, encode_cursor
from .service import Service

if TYPE_CHECKING:
    from .adminweb import AdminWeb

PAGE_SIZE = 50  # pages listed on one screen


class SettingsPage:
    """The handlers of /admin/settings, /admin/rules and /admin/pages, rendering through the shared page."""

    def __init__(self, web: AdminWeb) -> None:
        self.web = web

    async def show(self, v: Visit) -> Response:
        """The settings page: the rules form filled in with the rules in force, the pages, the tokens."""
        rules = await run_in_threadpool(store.get_rules, v.service.db)
        return await self._show(v, rules.model_dump(), {}, 200)

    async def _show(self, v: Visit, values: dict[str, Any], errors: dict[str, str], status: int) -> Response:
        cursor = v.request.query_params.get("cursor")
        context = await run_in_threadpool(self._data, v.service, cursor)
        return self.web.page_with_flash(v, "admin_settings.html", status, section="settings",
                                        fields=rule_fields(values, errors), errors=errors, **context)

    def _data(self, service: Service, cursor: str | None) -> dict[str, Any]:
        origins = self.web.settings.site_origins
        after = decode_id_cursor(service.keys, cursor or None)
        pages, last = store.list_pages(service.db, PAGE_SIZE, after)
        tokens = store.list_tokens(service.db)
        return {
            "pages": [{**p, "queue": list_url(page=p["page"]), "article": article_url(p["page"], origins),
                       "links": {s: list_url(status=s, page=p["page"]) for s in STATUSES}} for p in pages],
            "pages_next": f"/admin/settings?{urlencode({'cursor': encode_cursor(service.keys, [last])})}"
                          if last is not None else None,
            "pages_first": "/admin/settings" if cursor else None, "labels": LABELS,
            "tokens": [{"name": t["name"], "created": time_view(t["created_at"]),
                        "used": time_view(t["last_used_at"]) if t["last_used_at"] else None} for t in tokens],
            "settings_back": urlencode({"cursor": cursor}) if cursor else "",
        }

    async def save_rules(self, v: Visit) -> Response:
        """Save the posted moderation rules, or show the form again with what to fix."""
        assert v.form is not None
        values = rules_from_form(v.form)
        try:
            rules = forms.rules_in(values)
        except ApiError as exc:
            if v.wants_json:
                raise
            return await self._show(v, values, exc.fields, 422)
        await run_in_threadpool(store.put_rules, v.service.db, rules, v.session.name, store.utcnow())
        return self.web.done(v, "/admin/settings", "Saved the moderation rules.", [], rules=rules.model_dump())

    async def set_page(self, v: Visit) -> Response:
        """Close one page to new comments, or open it again."""
        page = v.field("page") or ""
        closed = v.field("closed")
        if not 0 < len(page) <= 1024 or closed not in ("0", "1"):
            raise validation_error({"page": "must be 1 to 1024 characters", "closed": "must be 0 or 1"})
        result = await run_in_threadpool(store.set_closed, v.service.db, page, closed == "1", v.session.name,
                                         store.utcnow())
        verb = "Closed" if result["closed"] else "Opened"
        back = back_url(v.field("back"), "/admin/settings")
        return self.web.done(v, back, f"{verb} {page} {'to' if result['closed'] else 'for'} new comments.", [],
                             **result)
