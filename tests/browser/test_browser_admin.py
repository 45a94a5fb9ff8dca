"""The moderators' page as a moderator meets it: sign in, clear a queue by keyboard, bulk spam and undo,
edit in place, change a rule, and the same without JavaScript; nothing a commenter wrote ever runs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

Service = Any  # conftest.Service: the running service and its moderator's HTTP client

# Runs before any page script: collects CSP violations and marks the document, so a reload shows.
WATCH = """
window.__violations = [];
window.__loaded = (window.__loaded || 0) + 1;
document.addEventListener('securitypolicyviolation',
  e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""
# The rest of the queue.
QUEUE = [
    ("Priya", "Thirty passengers a night sounds like a low bar. Good news."),
    ("Marek", "Will the buses take bicycles? The last stop is far from the estate."),
    ("Leonie", "Please add a stop at the hospital's east gate, not only the main entrance."),
    ("Sam", "Hourly is better than nothing, but half-hourly on Fridays would fill them."),
    ("Agnieszka", "Thank you to everyone who signed the petition."),
    ("Ruth", "Is the fare the same as the day buses?"),
    ("Jonas", "The photographs of the empty taxi ranks were brilliant."),
    ("Hal", "I hope the drivers get a proper break room at the harbour."),
    ("Mina", "Eighteen months is a fair trial. Publish the numbers every quarter as promised."),
    ("Olu", "Can the timetable go on the council's open data page?"),
    ("Wen", "Night workers keep this city running. About time."),
    ("Karl", "Who pays if the trial fails? The article does not say."),
    ("Fatima", "The rope works housing needs this more than anyone."),
    ("Dee", "Good reporting, thank you Maren."),
    ("Nils", "Will there be a real-time tracker? Waiting at 3am in the rain is miserable."),
    ("Beth", "Finally. My daughter has been cycling home on an unlit road."),
    ("Yusuf", "Does the ferry connection still run at that hour?"),
]
HOSTILE_AUTHOR = '<img src=x onerror="alert(1)">'
HOSTILE_BODY = '<script>alert(2)</script><img src=x onerror="alert(3)"> <a href="javascript:alert(4)">link</a>'


@dataclass
class Desk:
    """A moderator's browser tab on the service, and what happened in it."""

    page: Page
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self, *expected: int) -> list[str]:
        """CSP violations, script errors, failed loads (but those with an expected status) and stray dialogs."""
        violations = list(self.page.evaluate("window.__violations || []"))
        allowed = tuple(f"status of {code} " for code in expected)
        errors = [m for m in self.console if (m.startswith(("error", "pageerror")) or "Content Security" in m)
                  and not (allowed and "Failed to load resource" in m and any(a in m for a in allowed))]
        return violations + errors + [f"dialog: {d}" for d in self.dialogs if "Delete" not in d]


def new_key() -> str:
    return f"/mod/{uuid.uuid4().hex[:10]}/"


def open_desk(context: Any, service: Service, path: str = "/admin", *, sign_in: bool = True) -> Desk:
    page = context.new_page()
    page.add_init_script(WATCH)
    desk = Desk(page)
    page.on("console", lambda m: desk.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: desk.console.append(f"pageerror: {e}"))
    page.on("dialog", lambda d: (desk.dialogs.append(d.message),
                                 d.accept() if "Delete" in d.message else d.dismiss()))
    page.goto(service.url + path)
    if sign_in:
        expect(page).to_have_url(re.compile(r"/admin/signin(\?next=|$)"))
        page.get_by_label("Moderator token").fill(service.token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as")).to_be_visible()
    return desk


def seed(service: Service, key: str, count: int) -> list[int]:
    """count comments waiting in the queue of page key, oldest first."""
    return [service.post(key, words(), words(1).capitalize(), approve=False)["id"] for _ in range(count)]


def leave(service: Service, key: str, body: str, author: str, **fields: Any) -> int:
    """A comment from author (with a plausible address) waiting in the queue of page key."""
    email = re.sub(r"[^a-z]", "", author.lower()) or "reader"
    answer = service.http.post("/api/comments", json={"page": key, "body": body, "author": author,
                                                      "email": f"{email}.{uuid.uuid4().hex[:4]}@example.org",
                                                      **fields})
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


def words(count: int = 8) -> str:
    """Words no other comment used (the spam filter learns from the verdicts of earlier tests)."""
    return " ".join(uuid.uuid4().hex[:7] for _ in range(count)) + "."


def statuses(service: Service, key: str) -> dict[str, int]:
    return service.admin("GET", "/api/admin/comments", params={"page": key})["counts"]


def count(page: Page, status: str) -> Any:
    return page.locator(f'[data-count="{status}"]')


@pytest.fixture()
def rules(service: Service) -> Iterator[dict[str, Any]]:
    """The rules as they were; put back after the test, whatever it changed."""
    saved = service.admin("GET", "/api/admin/rules")
    yield saved
    service.admin("PUT", "/api/admin/rules", json=saved)


def test_sign_in_and_out(service: Service, context: Any) -> None:
    desk = open_desk(context, service, sign_in=False)
    page = desk.page
    expect(page).to_have_url(re.compile(r"/admin/signin$"))
    page.get_by_label("Moderator token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token was not accepted.")
    page.get_by_label("Moderator token").fill(service.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".adm-me")).to_have_text("browser-tests")
    expect(page.get_by_role("link", name=re.compile(r"^Pending \d+$"))).to_have_attribute("aria-current", "page")
    (cookie,) = [c for c in context.cookies() if c["name"] == "comments_admin"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert page.evaluate("document.cookie") == ""
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(service.url + "/admin")
    expect(page).to_have_url(re.compile(r"/admin/signin$"))
    assert desk.problems(401) == []  # the refused sign-in


def test_clear_a_queue_of_20_with_the_keyboard_only(service: Service, context: Any, artifacts: Path) -> None:
    key = new_key()
    parent = leave(service, key, "The night bus was the only way home after a late shift. Glad it is back.", "Ines",
                   url="https://ines.example")
    service.admin("PATCH", f"/api/admin/comments/{parent}", json={"status": "approved"})
    reply = leave(service, key, "Same for me: I walked along the river road for two winters.", "Tomas", parent=parent)
    links = leave(service, key, "The timetable is at https://bus.example.org/n1 and the map at "
                                "https://bus.example.org/map", "Lars")
    hostile = leave(service, key, HOSTILE_BODY, HOSTILE_AUTHOR, url="https://hostile.example")
    ids = [reply, links, hostile] + [leave(service, key, text, author) for author, text in QUEUE]
    desk = open_desk(context, service, f"/admin?page={key}&limit=12")  # the other 8 come in when these are done
    page = desk.page
    items = page.locator("#queue > .adm-item")
    assert statuses(service, key)["pending"] == 20, [
        (c["author"], c["spam_reasons"]) for c in
        service.admin("GET", "/api/admin/comments", params={"page": key, "status": "spam"})["items"]]
    expect(items).to_have_count(12)
    expect(count(page, "pending")).to_have_text("20")
    expect(page.locator(f"#comment-{hostile} .adm-author")).to_have_text(HOSTILE_AUTHOR)
    expect(page.locator(f"#comment-{reply} .adm-inreply")).to_contain_text("The night bus was the only way home")
    expect(page.locator(f"#comment-{links} .adm-body a")).to_have_count(2)
    page.screenshot(path=str(artifacts / "admin-queue.png"))
    loaded = page.evaluate("window.__loaded")

    current = page.locator(".adm-item.adm-current")
    expect(current).to_have_attribute("id", f"comment-{ids[0]}")
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#adm-help")).to_be_hidden()
    page.keyboard.press("j")
    expect(current).to_have_attribute("id", f"comment-{ids[1]}")
    page.keyboard.press("k")
    expect(current).to_have_attribute("id", f"comment-{ids[0]}")

    plan = "a" * 8 + "s" * 4 + "t" * 4 + "a" * 4
    for n, letter in enumerate(plan):
        # The next comment is current at once; the last 8 arrive without a reload when the first 12 are done.
        expect(items).to_have_count(12 - n if n < 12 else 20 - n)
        expect(current).to_have_attribute("id", f"comment-{ids[n]}")
        page.keyboard.press(letter)
    expect(items).to_have_count(0)
    expect(page.locator("#adm-empty")).to_be_visible()
    expect(count(page, "pending")).to_have_text("0")
    expect(count(page, "approved")).to_have_text("13")
    expect(count(page, "spam")).to_have_text("4")
    expect(count(page, "trash")).to_have_text("4")
    assert statuses(service, key) == {"pending": 0, "approved": 13, "spam": 4, "trash": 4}
    spam = service.admin("GET", "/api/admin/comments", params={"page": key, "status": "spam"})["items"]
    assert sorted(c["id"] for c in spam) == ids[8:12]
    assert page.evaluate("window.__loaded") == loaded
    assert desk.problems() == []


def test_bulk_spam_a_selection_then_undo_and_delete(service: Service, context: Any) -> None:
    key = new_key()
    ids = seed(service, key, 6)
    desk = open_desk(context, service, f"/admin?page={key}")
    page = desk.page
    items = page.locator("#queue > .adm-item")
    expect(items).to_have_count(6)
    for letter in "xjjxjx":  # select the 1st, 3rd and 4th
        page.keyboard.press(letter)
    expect(page.locator("#queue input[name=ids]:checked")).to_have_count(3)
    page.get_by_label("With the selected comments:").select_option("spam")
    page.get_by_role("button", name="Apply").click()
    expect(items).to_have_count(3)
    expect(page.locator("#adm-toast")).to_contain_text("Marked as spam: 3 comments.")
    expect(count(page, "spam")).to_have_text("3")
    assert statuses(service, key)["spam"] == 3
    page.keyboard.press("u")
    expect(page.locator("#adm-toast")).to_have_text("Undone.")
    expect(items).to_have_count(6)
    expect(count(page, "spam")).to_have_text("0")
    expect(page.locator("#queue input[name=ids]:checked")).to_have_count(0)
    assert statuses(service, key) == {"pending": 6, "approved": 0, "spam": 0, "trash": 0}
    assert [int(i) for i in items.evaluate_all("nodes => nodes.map(n => n.dataset.id)")] == ids

    page.locator(f"#comment-{ids[1]}").get_by_role("button", name="Spam").click()  # with the mouse
    expect(items).to_have_count(5)
    page.get_by_role("button", name="Undo").click()
    expect(items).to_have_count(6)
    page.keyboard.press("s")
    expect(items).to_have_count(5)

    page.get_by_role("link", name=re.compile(r"^Spam \d+$")).click()
    expect(page.locator("#queue > .adm-item")).to_have_count(1)
    page.keyboard.press("#")  # delete for good: confirmed in a dialog
    expect(page.locator("#queue > .adm-item")).to_have_count(0)
    expect(page.locator("#adm-toast")).to_have_text(re.compile(r"^Deleted comment #\d+ for good\.$"))
    assert any("Delete this comment for good" in d for d in desk.dialogs)
    assert statuses(service, key) == {"pending": 5, "approved": 0, "spam": 0, "trash": 0}
    assert desk.problems() == []


def test_edit_a_comment_in_place(service: Service, context: Any) -> None:
    key = new_key()
    (comment_id,) = seed(service, key, 1)
    desk = open_desk(context, service, f"/admin?page={key}")
    page = desk.page
    loaded = page.evaluate("window.__loaded")
    page.keyboard.press("e")
    body = page.locator(f"#edit-body-{comment_id}")
    expect(body).to_be_focused()
    body.fill("Edited: the <b>night bus</b> runs again. <script>alert(5)</script>")
    page.locator(f"#edit-author-{comment_id}").fill("Reader, edited")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#adm-toast")).to_have_text(f"Saved comment #{comment_id}.")
    item = page.locator(f"#comment-{comment_id}")
    expect(item.locator(".adm-body b")).to_have_text("night bus")
    expect(item.locator(".adm-body")).to_have_text("Edited: the night bus runs again. alert(5)")
    expect(item.locator(".adm-author")).to_have_text("Reader, edited")
    full = service.admin("GET", f"/api/admin/comments/{comment_id}")
    assert full["author"] == "Reader, edited" and "<script" not in full["body_html"]
    assert page.evaluate("window.__loaded") == loaded
    assert desk.problems() == []


def test_change_a_rule_and_see_it_take_effect(service: Service, context: Any, rules: dict[str, Any]) -> None:
    desk = open_desk(context, service, "/admin/settings", sign_in=False)
    page = desk.page
    page.get_by_label("Moderator token").fill(service.token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Rules and pages").click()
    word = f"frob{uuid.uuid4().hex[:6]}"
    page.get_by_label("Publish at once unless a rule or the spam filter holds it").check()
    page.get_by_label(re.compile(r"^File as spam a comment that contains")).fill(word)
    page.get_by_label("Hold a comment with more links than").fill("-3")
    page.get_by_role("button", name="Save rules").click()
    expect(page.locator(".adm-error")).to_have_text("must be a whole number from 0")
    assert service.admin("GET", "/api/admin/rules")["moderation"] == rules["moderation"]
    page.get_by_label("Hold a comment with more links than").fill("2")
    # Every comment here comes from 127.0.0.1, which earlier tests marked as spam: keep the filter out of it.
    page.get_by_label(re.compile(r"^File as spam when the spam filter's score")).fill("1")
    page.get_by_label(re.compile(r"^Hold for moderation when the spam filter's score")).fill("1")
    page.get_by_role("button", name="Save rules").click()
    expect(page.get_by_role("status")).to_have_text("Saved the moderation rules.")
    key = new_key()
    published = service.http.post("/api/comments", json={"page": key, "body": "Lovely news.", "author": "Ann",
                                                         "email": f"a.{uuid.uuid4().hex[:6]}@example.org"})
    assert published.status_code == 201, published.text
    held = service.http.post("/api/comments", json={"page": key, "body": f"Buy {word} now", "author": "Sp",
                                                    "email": f"s.{uuid.uuid4().hex[:6]}@example.org"})
    assert held.status_code == 202
    assert service.admin("GET", f"/api/admin/comments/{held.json()['id']}")["status"] == "spam"
    page.reload()
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=key, exact=True))
    row.get_by_role("button", name="Close").click()
    expect(page.get_by_role("status")).to_have_text(f"Closed {key} to new comments.")
    assert service.http.post("/api/comments", json={"page": key, "body": "Late.", "author": "L",
                                                    "email": "l@example.org"}).status_code == 403
    assert desk.problems(422) == []  # the refused -3


def test_plain_forms_work_without_javascript(service: Service, new_context: Any) -> None:
    key = new_key()
    (comment_id,) = seed(service, key, 1)
    desk = open_desk(new_context(java_script_enabled=False), service, f"/admin?page={key}")
    page = desk.page
    page.locator(f"#comment-{comment_id}").get_by_role("button", name="Trash").click()
    expect(page.locator("#adm-flash")).to_contain_text(f"Moved to the Trash: comment #{comment_id}.")
    expect(page.locator("#queue > .adm-item")).to_have_count(0)
    page.get_by_role("button", name="Undo").click()
    expect(page.locator(f"#comment-{comment_id}")).to_be_visible()
    assert service.admin("GET", f"/api/admin/comments/{comment_id}")["status"] == "pending"
    page.locator(f"#comment-{comment_id}").get_by_role("button", name="Spam").click()
    page.get_by_role("link", name=re.compile(r"^Spam \d+$")).click()
    page.locator(f"#comment-{comment_id}").get_by_role("button", name="Delete for good").click()
    expect(page.get_by_role("heading", name=f"Delete comment #{comment_id} for good?")).to_be_visible()
    page.get_by_role("button", name="Delete for good").click()
    expect(page.locator("#adm-flash")).to_contain_text(f"Deleted comment #{comment_id} for good.")
    assert statuses(service, key) == {"pending": 0, "approved": 0, "spam": 0, "trash": 0}
