"""The embed as a reader meets it: thread, form, own comments, errors, no-JS form, strict CSP."""

from __future__ import annotations

import html
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

Service = Any  # conftest.Service: the running service, its moderator's client and the embedding site

# Runs before any page script: collects CSP violations.
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@dataclass
class Article:
    """An article page of the embedding site with the embed in it, and what happened on it."""

    page: Page
    key: str
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    accept_dialogs: bool = False

    def violations(self) -> list[str]:
        reported = [m for m in self.console if "Content Security Policy" in m]
        return list(self.page.evaluate("window.__violations")) + reported


def new_key() -> str:
    return f"/t/{uuid.uuid4().hex[:10]}/"


def open_article(context: Any, service: Service, key: str | None = None, *, module: bool = False,
                 **data: str) -> Article:
    """Open an article on the site's origin (not the service's) under a strict CSP, with the embed."""
    key = key or new_key()
    attrs = "".join(f' data-{k.replace("_", "-")}="{html.escape(v)}"' for k, v in data.items())
    kind = 'type="module"' if module else "defer"
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Article</title>'
        f'<link rel="stylesheet" href="{service.url}/embed.css">'
        f'<script src="{service.url}/embed.js" {kind}></script></head>'
        '<body><h1>An article</h1><p>Text.</p>'
        f'<div id="comments" data-page="{html.escape(key)}"{attrs}></div></body></html>'
    )
    csp = (f"default-src 'none'; script-src {service.url}; style-src {service.url}; "
           f"connect-src {service.url}; img-src 'self' data:; base-uri 'none'")
    url = service.site.add(key, document, {"Content-Security-Policy": csp})
    page = context.new_page()
    page.add_init_script(WATCH)
    article = Article(page, key)
    page.on("console", lambda m: article.console.append(m.text))
    page.on("dialog", lambda d: (article.dialogs.append(d.message),
                                 d.accept() if article.accept_dialogs else d.dismiss()))
    page.goto(url)
    try:
        expect(page.locator(".cmt-title")).not_to_have_text("")
    except AssertionError as exc:
        raise AssertionError(f"the embed did not render; console: {article.console}") from exc
    return article


def box(page: Page, name: str) -> Locator:
    return page.get_by_role("textbox", name=name, exact=True)


def fill(page: Page, body: str, author: str = "Reader", email: str = "", url: str = "") -> None:
    box(page, "Comment").fill(body)
    box(page, "Name").fill(author)
    box(page, "Email").fill(email or f"reader.{uuid.uuid4().hex[:8]}@example.org")
    box(page, "Website").fill(url)


def submit(page: Page) -> None:
    page.get_by_role("button", name="Post Comment").click()


def status(page: Page) -> Locator:
    return page.locator("#respond .cmt-status")


def pending(page: Page) -> Locator:
    """The reader's own comments that wait for moderation."""
    return page.locator(".cmt-comment", has=page.locator(".cmt-pending"))


def posted(page: Page) -> list[dict[str, Any]]:
    """Start recording the JSON bodies of comment posts."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/comments"):
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", seen)
    return bodies


def has_form_tokens(service: Service) -> bool:
    return httpx.get(f"{service.url}/api/form-token", params={"page": "/p/"}).status_code == 200


def test_thread_renders_nested_with_paging_dates_and_links(service: Service, context: Any) -> None:
    key = new_key()
    ann = service.post(key, "First!", "Ann", url="https://ann.example")
    bob = service.post(key, "A reply to Ann.", "Bob", parent=ann["id"])
    cy = service.post(key, "A reply to Bob.", "Cy", parent=bob["id"])
    dee = service.post(key, "A later thought.", "Dee")
    service.post(key, "Still waiting in the queue.", "Eve", approve=False)
    a, b, c, d = (f"#comment-{x['id']}" for x in (ann, bob, cy, dee))

    article = open_article(context, service, key, per_page="1")
    page = article.page
    expect(page.locator(".cmt-title")).to_have_text("4 Responses")
    expect(page.locator(f"{a} > ol > {b} > ol > {c}")).to_have_count(1)
    expect(page.locator(d)).to_have_count(0)
    expect(page.get_by_text("Still waiting in the queue.")).to_have_count(0)

    link = page.locator(f"{a} .cmt-author a")
    expect(link).to_have_attribute("href", "https://ann.example")
    expect(link).to_have_attribute("rel", "nofollow ugc noopener")
    expect(page.locator(f"{b} .cmt-author a")).to_have_count(0)
    moment = page.locator(f"{a} > article time")
    expect(moment).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    expect(moment).to_have_attribute("title", re.compile(r"\d"))
    expect(moment).to_have_text(re.compile(r"^(now|\d+ seconds? ago|\d+ minutes? ago)$"))
    expect(page.locator(f"{a} > article > .cmt-content")).to_have_text("First!")

    more = page.get_by_role("button", name="More comments")
    more.click()
    expect(page.locator(f".cmt-list > {d}")).to_have_count(1)
    expect(more).to_be_hidden()
    assert not article.violations()

    # At depth 2 at most, Cy's reply to Bob is shown beside Bob's, and Bob's has no Reply link.
    page = open_article(context, service, key, max_depth="2").page
    expect(page.locator(f"{a} > ol > {c}")).to_have_count(1)
    expect(page.locator(f"{b} .cmt-reply")).to_have_count(0)
    expect(page.locator(f"{a} > article .cmt-reply")).to_have_text("Reply")


def test_counts_in_words_as_a_module_with_data_api(service: Service, context: Any) -> None:
    key = new_key()
    page = open_article(context, service, key, module=True, api=service.url).page
    expect(page.locator(".cmt-title")).to_have_text("No Responses Yet")
    service.post(key, "Only one.", "Ann")
    page.reload()
    expect(page.locator(".cmt-title")).to_have_text("One Response")


def test_pending_comment_is_shown_to_its_author_only(service: Service, new_context: Any) -> None:
    article = open_article(new_context(), service)
    page = article.page
    bodies = posted(page)
    tokens = has_form_tokens(service)
    if tokens:
        expect(page.locator("input[name=form_token]")).to_have_attribute("value", re.compile(r"."))
    fill(page, "My first words here.")
    page.get_by_role("button", name="Post Comment").dblclick()
    mine = pending(page)
    expect(mine.locator(".cmt-pending")).to_have_text("Your comment is awaiting moderation.")
    expect(mine.locator(".cmt-content")).to_have_text("My first words here.")
    expect(status(page)).to_contain_text("awaiting moderation")
    expect(status(page)).to_be_focused()
    assert len(bodies) == 1, "a double click posts once"
    sent = bodies[0]
    assert sent["page"] == article.key and sent["homepage"] == "" and "parent" not in sent
    assert bool(sent.get("form_token")) == tokens
    comment_id = mine.get_attribute("id")
    assert comment_id and re.fullmatch(r"comment-\d+", comment_id)
    expect(box(page, "Comment")).to_have_value("")
    expect(page.locator(".cmt-title")).to_have_text("No Responses Yet")

    page.reload()
    expect(page.locator(f"#{comment_id} .cmt-pending")).to_be_visible()
    expect(page.locator(f"#{comment_id} .cmt-content")).to_have_text("My first words here.")

    other = open_article(new_context(), service, article.key).page
    expect(other.locator(".cmt-title")).to_have_text("No Responses Yet")
    expect(other.locator(".cmt-comment")).to_have_count(0)
    assert not article.violations()


def test_saved_details_checkbox(service: Service, context: Any) -> None:
    page = open_article(context, service).page
    save = page.get_by_role("checkbox", name=re.compile(r"^Save my name, email, and website in this browser"))
    expect(save).not_to_be_checked()
    fill(page, "Remember me, please.", "Rita", "rita@example.org", "https://rita.example")
    save.check()
    submit(page)
    expect(pending(page)).to_have_count(1)

    page.reload()
    expect(box(page, "Name")).to_have_value("Rita")
    expect(box(page, "Email")).to_have_value("rita@example.org")
    expect(box(page, "Website")).to_have_value("https://rita.example")
    expect(save).to_be_checked()

    save.uncheck()
    page.reload()
    expect(box(page, "Name")).to_have_value("")
    expect(box(page, "Email")).to_have_value("")
    expect(save).not_to_be_checked()
    assert "rita@example.org" not in page.evaluate("JSON.stringify(Object.assign({}, localStorage))")

    # Not ticked: nothing is kept.
    fill(page, "Forget me.", "Otto", "otto@example.org")
    submit(page)
    expect(pending(page)).to_have_count(2)
    page.reload()
    expect(box(page, "Name")).to_have_value("")


def test_reply_moves_the_form_and_posts_the_parent(service: Service, context: Any) -> None:
    key = new_key()
    ann = service.post(key, "Who remembers the old route?", "Ann")
    a = f"#comment-{ann['id']}"
    page = open_article(context, service, key).page
    reply = page.locator(f"{a} .cmt-reply")
    expect(reply).to_have_attribute("aria-label", "Reply to Ann")

    reply.click()
    expect(page.locator(f"{a} > #respond")).to_have_count(1)
    expect(page.locator(".cmt-reply-title")).to_contain_text("Reply to Ann")
    expect(box(page, "Comment")).to_be_focused()
    page.get_by_role("link", name="Cancel reply").click()
    expect(page.locator("#comments > #respond")).to_have_count(1)
    expect(page.locator(".cmt-reply-title")).to_contain_text("Leave a Reply")
    expect(page.get_by_role("link", name="Cancel reply")).to_be_hidden()
    expect(reply).to_be_focused()

    bodies = posted(page)
    reply.press("Enter")
    expect(page.locator(f"{a} > #respond")).to_have_count(1)
    fill(page, "I do: it ran until two years ago.", "Bob")
    submit(page)
    expect(page.locator(f"{a} > ol > .cmt-comment .cmt-pending")).to_be_visible()
    assert bodies[0]["parent"] == ann["id"]
    expect(page.locator("#comments > #respond")).to_have_count(1)
    expect(page.locator(".cmt-reply-title")).to_contain_text("Leave a Reply")

    page.reload()  # the pending reply comes back under its parent
    expect(page.locator(f"{a} > ol > .cmt-comment .cmt-pending")).to_be_visible()


def test_field_errors_beside_the_fields_and_keyboard_order(service: Service, context: Any) -> None:
    page = open_article(context, service).page
    submit(page)
    for name in ("comment", "author", "email"):
        field_ = page.locator(f"#cmt-{name}")
        expect(field_).to_have_attribute("aria-invalid", "true")
        expect(field_).to_have_attribute("aria-describedby", f"cmt-{name}-error")
        expect(page.locator(f"#cmt-{name}-error")).to_be_visible()
    expect(box(page, "Comment")).to_be_focused()

    fill(page, "Hello there.", "Ann", "ann@invalid")  # the service, not the script, finds this one
    submit(page)
    email = box(page, "Email")
    expect(email).to_be_focused()
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#cmt-email-error")).to_be_visible()
    expect(page.locator("#cmt-email-error")).not_to_have_text("")
    expect(page.locator("#cmt-author")).not_to_have_attribute("aria-invalid", "true")
    expect(status(page)).to_contain_text("correct")

    # Keyboard order: the honeypot is skipped.
    box(page, "Comment").focus()
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    assert order == ["cmt-author", "cmt-email", "cmt-url", "cmt-save", "Post Comment"]
    honeypot = page.locator("input[name=homepage]")
    expect(honeypot).to_have_attribute("tabindex", "-1")
    expect(honeypot).to_have_attribute("autocomplete", "off")
    expect(page.get_by_text("Leave this field empty")).not_to_be_in_viewport()


def test_errors_in_plain_words(service: Service, context: Any) -> None:
    key = new_key()
    page = open_article(context, service, key).page
    fill(page, "Saying it twice.", "Ann", "ann.twice@example.org")
    submit(page)
    expect(pending(page)).to_have_count(1)
    fill(page, "Saying it twice.", "Ann", "ann.twice@example.org")
    submit(page)
    expect(status(page)).to_have_text("You have already posted this comment.")
    expect(status(page)).to_be_focused()

    service.admin("PATCH", "/api/admin/pages", params={"page": key}, json={"closed": True})
    fill(page, "Too late?", "Ann")
    submit(page)
    expect(status(page)).to_have_text("Comments are closed on this page.")

    # The service's rate limit is off in these tests; a stand-in answer checks the wording.
    page.route(f"{service.url}/api/comments", lambda route: route.fulfill(
        status=429, body='{"error": {"code": "rate_limited", "message": "slow down"}}',
        headers={"Retry-After": "30", "Content-Type": "application/json",
                 "Access-Control-Allow-Origin": service.site.origin,
                 "Access-Control-Expose-Headers": "Retry-After"}))
    submit(page)
    expect(status(page)).to_have_text(
        "You are posting comments too quickly. Please wait 30 seconds and try again.")
    expect(page.get_by_role("button", name="Post Comment")).to_be_enabled()


PAYLOADS = [
    "<script>window.__xss = 1; alert(1)</script>",
    '<img src=x onerror="window.__xss = 2; alert(2)">',
    '<a href="javascript:window.__xss = 3">click me</a>',
    '<svg onload="window.__xss = 4"><a xlink:href="javascript:alert(4)">svg</a></svg>',
    '"><iframe srcdoc="<script>parent.__xss = 5</script>"></iframe>',
    '<b onmouseover="window.__xss = 6">bold</b> <em>fine</em> '
    '<a href="https://ok.example" title="t">ok</a>',
    "<style>body{display:none}</style><form action=https://evil.example><input name=x></form>",
    "&lt;script&gt;window.__xss = 7&lt;/script&gt; `${window.__xss = 8}`",
]


def test_html_and_script_payloads_stay_harmless(service: Service, context: Any) -> None:
    key = new_key()
    evil_name = '<img src=x onerror="window.__xss = 9">Mallory'
    seeded = service.post(key, "\n\n".join(PAYLOADS), evil_name)
    article = open_article(context, service, key)
    page = article.page
    fill(page, "\n\n".join(PAYLOADS), "<script>window.__xss = 10</script>")
    submit(page)
    expect(pending(page)).to_have_count(1)
    page.reload()
    expect(pending(page)).to_have_count(1)
    expect(page.locator(f"#comment-{seeded['id']} .cmt-author")).to_have_text(evil_name)
    expect(pending(page).locator(".cmt-author")).to_have_text("<script>window.__xss = 10</script>")
    for item in (page.locator(f"#comment-{seeded['id']}"), pending(page)):
        content = item.locator(".cmt-content")
        expect(content.locator("em")).to_have_text("fine")
        link = content.locator("a[href='https://ok.example']")
        expect(link).to_have_attribute("rel", "nofollow ugc noopener")
        assert content.locator("script, img, svg, iframe, style, form, input").count() == 0
        assert content.locator("[onerror], [onload], [onmouseover], [href^='javascript']").count() == 0
    page.locator(".cmt-content b").first.hover()
    page.get_by_text("click me").first.click()
    assert page.evaluate("window.__xss") is None
    assert article.dialogs == []
    assert not article.violations()


def test_author_can_edit_and_delete_within_the_window(service: Service, context: Any) -> None:
    article = open_article(context, service)
    page = article.page
    fill(page, "Frist!")
    submit(page)
    mine = pending(page)
    mine.get_by_role("button", name="Edit").click()
    editor = mine.get_by_label("Edit your comment")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Frist!")
    editor.fill("First, I meant.")
    mine.get_by_role("button", name="Save").click()
    expect(mine.locator(".cmt-content")).to_have_text("First, I meant.")
    expect(mine.locator(".cmt-pending")).to_be_visible()

    page.reload()
    expect(mine.locator(".cmt-content")).to_have_text("First, I meant.")
    article.accept_dialogs = True
    mine.get_by_role("button", name="Delete").click()
    expect(mine).to_have_count(0)
    assert article.dialogs == ["Delete your comment?"]
    page.reload()
    expect(page.locator(".cmt-comment")).to_have_count(0)
    assert page.evaluate("localStorage.getItem('cmt-own')") == "[]"


def test_controls_disappear_after_the_window(service: Service, context: Any) -> None:
    page = open_article(context, service).page
    fill(page, "Quick, before the window closes.")
    submit(page)
    mine = pending(page)
    expect(mine.get_by_role("button", name="Edit")).to_be_visible()
    page.evaluate("""localStorage.setItem('cmt-own', JSON.stringify(JSON.parse(
        localStorage.getItem('cmt-own')).map(m => ({...m, created: m.created - 16 * 60e3}))))""")
    page.reload()
    expect(mine.locator(".cmt-pending")).to_be_visible()
    expect(mine.get_by_role("button", name="Edit")).to_have_count(0)
    expect(mine.get_by_role("button", name="Delete")).to_have_count(0)


def test_no_javascript_form_posts_and_comes_back(service: Service, new_context: Any) -> None:
    page = new_context(java_script_enabled=False).new_page()
    page.goto(f"{service.url}/demo")
    expect(page.get_by_role("heading", name="Leave a Reply")).to_be_visible()
    box(page, "Comment").fill("Posted without any script at all.")
    box(page, "Name").fill("Nora")
    box(page, "Email").fill("nora@example.org")
    expect(page.locator("input[name=homepage]")).to_have_attribute("tabindex", "-1")
    submit(page)
    page.wait_for_url(re.compile(re.escape(f"{service.url}/demo") + r"#comment-\d+$"))
    comment_id = int(page.url.rsplit("-", 1)[1])
    full = service.admin("GET", f"/api/admin/comments/{comment_id}")
    assert (full["page"], full["author"]) == ("/demo", "Nora")
    assert full["status"] in ("pending", "spam")  # held either way; a quick robot's post may look like spam


def test_plain_form_fragment(service: Service) -> None:
    form = f"{service.url}/embed/form"
    answer = httpx.get(form, params={"page": '/a "quoted" <page>/', "redirect": "https://site.test/a/"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    text = answer.text
    assert 'name="comment_post_ID" value="/a &#34;quoted&#34; &lt;page&gt;/"' in text
    assert f'action="{service.url}/api/comments"' in text
    for name in ("comment", "author", "email", "url", "comment_parent", "redirect_to", "homepage"):
        assert f'name="{name}"' in text
    assert 'name="redirect_to" value="https://site.test/a/"' in text
    if has_form_tokens(service):
        assert 'name="form_token" value="' in text

    referred = httpx.get(form, params={"page": "/p/"}, headers={"Referer": "https://site.test/from/"})
    assert 'name="redirect_to" value="https://site.test/from/"' in referred.text
    bad = httpx.get(form, params={"redirect": "javascript:alert(1)", "page": "/p/"})
    assert "javascript:" not in bad.text and "redirect_to" not in bad.text
    missing = httpx.get(form)
    assert missing.status_code == 422 and missing.json()["error"]["fields"]["page"]


def test_static_files_are_cacheable(service: Service) -> None:
    for path, media_type in (("/embed.js", "text/javascript"), ("/embed.css", "text/css")):
        answer = httpx.get(service.url + path)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media_type)
        assert "max-age" in answer.headers["cache-control"]
        etag = answer.headers["etag"]
        again = httpx.get(service.url + path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag
    script = httpx.get(service.url + "/embed.js").text
    assert ".style" not in script and "eval(" not in script and "new Function" not in script
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    demo = httpx.get(service.url + "/demo")
    csp = demo.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert " style=" not in demo.text and "<script>" not in demo.text


def test_demo_under_strict_csp(service: Service, context: Any, artifacts: Path) -> None:
    first = service.post("/demo", "The old night bus was the only way I could get home after a late shift.",
                         "Ines", url="https://ines.example")
    service.post("/demo", "Same here. I walked along the river road for two winters.", "Tomas",
                 parent=first["id"])
    service.post("/demo", "Thirty passengers a night sounds like a low bar. Good news.", "Priya")
    page = context.new_page()
    page.add_init_script(WATCH)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.goto(f"{service.url}/demo")
    expect(page.locator("h1")).to_contain_text("Night buses")
    expect(page.locator(".cmt-title")).to_have_text(re.compile(r"^\d+ Responses$"))
    expect(page.locator(f"#comment-{first['id']} .cmt-children .cmt-comment")).to_have_count(1)
    fill(page, "Posting from the demo page.", "Demo")
    submit(page)
    expect(pending(page)).to_have_count(1)
    page.screenshot(path=str(artifacts / "demo.png"), full_page=True)
    assert page.evaluate("window.__violations") == []
    failed = [m for m in console if "Content Security Policy" in m or m.startswith(("error", "pageerror"))]
    if not has_form_tokens(service):
        failed = [m for m in failed if "404" not in m]  # the form token is optional
    assert failed == []
