"""Mail with a real SMTP server process (aiosmtpd on loopback): moderators' mail and its one-click
links, the digest, readers' reply notices after double opt-in, unsubscribing, an SMTP outage, header
injection through the author's name, and templates a site overrides."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from comments import store
from comments.models import CommentIn
from comments.notify import links, mail
from comments.notify.worker import Worker
from comments.service import Service
from comments.store import outbox, subscriptions
from comments.store.common import action_t
from conftest import Clients, approve, comment, post
from test_notify_worker import MailServer, free_port, html_of, text_of

MAIL: dict[str, Any] = {
    "smtp_host": "127.0.0.1", "smtp_security": "none", "mail_from": "Comments <comments@blog.example>",
    "public_url": "https://comments.example", "moderator_emails": "mod@blog.example",
    "site_origins": "https://blog.example",
}
LINK = re.compile(r"https://comments\.example(/mail/[a-z]+)\?t=([A-Za-z0-9_.%-]+)")


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    server = MailServer(tmp_path_factory.mktemp("smtp") / "maildir").start()
    yield server
    server.stop()


@pytest.fixture
def inbox(smtp: MailServer) -> Iterator[MailServer]:
    smtp.clear()
    yield smtp
    smtp.clear()


@pytest.fixture
def settings_overrides(smtp: MailServer) -> dict[str, Any]:
    return {**MAIL, "smtp_port": smtp.port}


def links_in(message: EmailMessage) -> dict[str, tuple[str, str]]:
    """Each link of a mail's text part by the word before it (Approve, Spam, Trash, ...)."""
    found = {}
    for line in text_of(message).splitlines():
        match = LINK.search(line)
        if match:
            found[line.split(":")[0].strip() or match.group(1)] = (match.group(1), match.group(2))
    return found


def to(message: EmailMessage) -> str:
    return str(message["To"])


async def no_flood(mod: httpx.AsyncClient) -> None:
    rules = (await mod.get("/api/admin/rules")).json()
    assert (await mod.put("/api/admin/rules", json={**rules, "flood_seconds": 0})).status_code == 200


def outbox_rows(service: Service) -> list[Any]:
    with service.db.read() as conn:
        return conn.execute(sa.select(outbox.outbox_t).order_by(outbox.outbox_t.c.id)).all()


# ---- moderators ---------------------------------------------------------------------------------


async def test_a_held_comment_mails_the_moderator_whose_link_works_once(
    clients: Clients, service: Service, inbox: MailServer
) -> None:
    posted = await post(clients, page="/2023/01/hello/", author="Ann", url="ann.example",
                        body="A first remark.\n\nVisit https://ann.example for more.")
    assert posted.status_code == 202
    comment_id = posted.json()["id"]
    assert inbox.messages() == []  # posting writes the event; it never sends
    assert Worker(service).drain() == 1
    (message,) = inbox.messages()
    assert to(message) == "mod@blog.example"
    assert message["From"] == "Comments <comments@blog.example>"
    assert message["Subject"] == "[comments.example] Held for moderation: Ann on /2023/01/hello/"
    assert message["Auto-Submitted"] == "auto-generated"
    text = text_of(message)
    for part in ("/2023/01/hello/", "https://blog.example/2023/01/hello/#comment-", "Ann <https://ann.example>",
                 "A first remark.", "Spam score: 0.", "expires in 72 hours"):
        assert part in text, part
    assert "reader" not in text and "@example.org" not in text  # the commenter's address is not mailed
    assert "A first remark." in html_of(message)
    found = links_in(message)
    assert set(found) == {"Approve", "Spam", "Trash"}
    path, token = found["Approve"]

    reader = clients.client()
    page = await reader.get(path, params={"t": token})
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<form method="post" action="/mail/moderate">' in page.text and "<script" not in page.text
    assert store.get_full(service.db, comment_id)["status"] == "pending", "a GET changes nothing"
    assert (await reader.get(path, params={"t": token})).status_code == 200  # a scanner may follow it twice

    done = await reader.post(path, data={"t": token})
    assert done.status_code == 200 and "approved" in done.text
    assert store.get_full(service.db, comment_id)["status"] == "approved"
    again = await reader.post(path, data={"t": token})
    assert again.status_code == 409 and "works once" in again.text
    assert (await reader.get(path, params={"t": token})).status_code == 409
    with service.db.read() as conn:
        actor = conn.execute(sa.select(action_t.c.actor).where(action_t.c.comment_id == comment_id,
                                                               action_t.c.action == "status")).scalar_one()
    assert actor.startswith("mail:") and "@" not in actor and "mod" not in actor
    # The spam link of the same mail still works (each link once), on the approved comment.
    spam_path, spam_token = found["Spam"]
    assert (await reader.post(spam_path, data={"t": spam_token})).status_code == 200
    assert store.get_full(service.db, comment_id)["status"] == "spam"
    assert Worker(service).drain() == 0 and len(inbox.messages()) == 1


async def test_one_click_links_are_signed_expire_and_need_a_current_moderator(
    clients: Clients, service: Service, inbox: MailServer
) -> None:
    comment_id = (await post(clients)).json()["id"]
    target = outbox.moderator_target(service.db, "mod@blog.example")
    now = store.utcnow()
    reader = clients.client()
    good = links.mod_action(service.keys, comment_id, "trash", target, now, 72)
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert (await reader.get("/mail/moderate", params={"t": forged})).status_code == 400
    assert (await reader.post("/mail/moderate", data={"t": forged})).status_code == 400
    assert (await reader.post("/mail/moderate")).status_code == 400
    old = links.mod_action(service.keys, comment_id, "approve", target, now - timedelta(hours=73), 72)
    expired = await reader.post("/mail/moderate", data={"t": old})
    assert expired.status_code == 410 and "expired" in expired.text
    stranger = links.mod_action(service.keys, comment_id, "approve", "0123456789abcdef", now, 72)
    assert (await reader.post("/mail/moderate", data={"t": stranger})).status_code == 403
    other_purpose = service.keys.sign("form", [comment_id, "approve", target, 2**40, "x"])
    assert (await reader.post("/mail/moderate", data={"t": other_purpose})).status_code == 400
    assert store.get_full(service.db, comment_id)["status"] == "pending"
    assert (await reader.post("/mail/moderate", data={"t": good})).status_code == 200
    assert store.get_full(service.db, comment_id)["status"] == "trash"


async def test_no_mail_about_a_comment_moderated_before_the_worker_ran(
    clients: Clients, mod: httpx.AsyncClient, service: Service, inbox: MailServer
) -> None:
    comment_id = (await post(clients)).json()["id"]
    await approve(mod, comment_id)
    assert Worker(service).drain() == 1
    assert inbox.messages() == []
    assert [r.status for r in outbox_rows(service)] == ["done"]


class TestDigest:
    @pytest.fixture
    def settings_overrides(self, smtp: MailServer) -> dict[str, Any]:
        return {**MAIL, "smtp_port": smtp.port, "digest_minutes": 10,
                "moderator_emails": "mod@blog.example,second@blog.example"}

    async def test_held_comments_come_in_one_digest_per_moderator(
        self, clients: Clients, mod: httpx.AsyncClient, service: Service, inbox: MailServer
    ) -> None:
        ids = [(await post(clients, page=f"/d/{n}", author=f"Writer {n}")).json()["id"] for n in range(3)]
        await approve(mod, ids[2])  # moderated meanwhile: left out of the digest
        worker = Worker(service)
        now = store.utcnow()
        assert worker.run_once(now) == 0 and inbox.messages() == []  # the period has not ended
        later = now + timedelta(minutes=10, seconds=1)
        assert worker.drain(later) == 2
        assert worker.drain(later + timedelta(minutes=30)) == 0
        messages = inbox.messages()
        assert sorted(to(m) for m in messages) == ["mod@blog.example", "second@blog.example"]
        for message in messages:
            assert message["Subject"] == "[comments.example] 2 comments held for moderation"
            text = text_of(message)
            assert "Writer 0" in text and "Writer 1" in text and "Writer 2" not in text
            assert text.count("Approve: https://comments.example/mail/moderate?t=") == 2
        # Each moderator's links are their own: approving from one mail names that moderator.
        first = next(m for m in messages if to(m) == "mod@blog.example")
        path, token = LINK.findall(text_of(first))[0]  # the first comment's Approve link
        assert (await clients.client().post(path, data={"t": token})).status_code == 200
        assert store.get_full(service.db, ids[0])["status"] == "approved"


# ---- readers ------------------------------------------------------------------------------------


async def test_reply_notices_after_double_opt_in_and_unsubscribe(
    clients: Clients, mod: httpx.AsyncClient, service: Service, inbox: MailServer
) -> None:
    await no_flood(mod)
    ann = "ann.reader@example.org"
    asked = await clients.client().post("/api/comments", data={
        "comment_post_ID": "/r/1", "comment": "Tell me when someone answers.", "author": "Ann", "email": ann,
        "notify": "on"})
    assert asked.status_code == 202
    parent = asked.json()["id"]
    assert Worker(service).drain() == 2
    assert sorted(to(m) for m in inbox.messages()) == [ann, "mod@blog.example"]  # confirmation, held mail
    await approve(mod, parent)
    confirm_mail = next(m for m in inbox.messages() if to(m) == ann)
    assert confirm_mail["Subject"] == "[comments.example] Please confirm: email notices of replies"
    (path, token), = links_in(confirm_mail).values()
    assert path == "/mail/confirm"

    # Not confirmed yet: a reply brings no notice.
    early = (await post(clients, page="/r/1", parent=parent, author="Bob", body="An early reply.")).json()
    await approve(mod, early["id"])
    inbox.clear()
    assert Worker(service).drain() == 2  # the held mail (moderated already: skipped) and the notice
    assert inbox.messages() == []

    page = await clients.client().get(path, params={"t": token})
    assert page.status_code == 200 and 'action="/mail/confirm"' in page.text
    assert subscriptions.subscription_state(service.db, ann)["confirmed_at"] is None  # GET changes nothing
    assert (await clients.client().post(path, data={"t": token})).status_code == 200
    assert subscriptions.subscription_state(service.db, ann)["confirmed_at"] is not None

    # Confirmed: an approved reply by someone else brings one notice; her own reply brings none.
    inbox.clear()
    reply = await post(clients, page="/r/1", parent=parent, author="Carol <b>", body="I *agree*, <em>truly</em>.")
    assert ann not in reply.text
    own = await clients.client().post("/api/comments", json=comment(page="/r/1", parent=parent, email=ann,
                                                                    author="Ann", body="Answering myself."))
    await approve(mod, reply.json()["id"])
    await approve(mod, own.json()["id"])
    await mod.patch(f"/api/admin/comments/{reply.json()['id']}", json={"status": "pending"})
    await approve(mod, reply.json()["id"])  # approved twice: still one notice
    Worker(service).drain()
    notices = [m for m in inbox.messages() if to(m) == ann]
    assert len(notices) == 1
    notice = notices[0]
    assert notice["Subject"] == "[comments.example] Carol <b> replied to your comment"
    text = text_of(notice)
    assert "I *agree*, <em>truly</em>." in text
    assert f"https://blog.example/r/1#comment-{reply.json()['id']}" in text
    html = html_of(notice)
    assert "Carol &lt;b&gt;" in html and "<em>truly</em>" in html
    leave = notice["List-Unsubscribe"]
    assert notice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = LINK.search(leave)
    assert match and leave.startswith("<") and match.group(1) == "/mail/unsubscribe"
    thread = (await clients.client().get("/api/comments", params={"page": "/r/1"})).text
    assert ann not in thread

    # Asking again while confirmed sends no second confirmation.
    inbox.clear()
    await clients.client().post("/api/comments", json=comment(page="/r/2", email=ann, notify=True))
    Worker(service).drain()
    assert [to(m) for m in inbox.messages()] == ["mod@blog.example"]

    # One-click unsubscribe (RFC 8058): a POST to the List-Unsubscribe address; then no more notices.
    query = parse_qs(urlsplit(match.group(0)).query)
    gone = await clients.client().post(match.group(1), params={"t": query["t"][0]},
                                       data={"List-Unsubscribe": "One-Click"})
    assert gone.status_code == 200
    state = subscriptions.subscription_state(service.db, ann)
    assert state["unsubscribed_at"] is not None and state["watching"] == 0
    inbox.clear()
    late = (await post(clients, page="/r/1", parent=parent, author="Dan", body="Too late.")).json()
    await approve(mod, late["id"])
    assert Worker(service).drain() == 1  # only the (skipped) held mail: no notice was even written
    assert inbox.messages() == []


async def test_the_checkbox_is_in_the_plain_form(client: httpx.AsyncClient) -> None:
    form = (await client.get("/embed/form", params={"page": "/p/1"})).text
    assert 'name="notify"' in form and "Notify me of follow-up comments by email." in form
    script = (await client.get("/embed.js")).text
    assert "notify" in script and "Notify me of follow-up comments by email." in script


# ---- what could go wrong ------------------------------------------------------------------------


async def test_a_header_injection_through_the_author_name_is_harmless(
    clients: Clients, service: Service, inbox: MailServer
) -> None:
    # The form refuses line breaks in a name; NEL (U+0085) passes it, and an import could bring anything.
    via_api = await post(clients, author="Eve\x85Bcc: victim@evil.example", page="/x/1")
    assert via_api.status_code == 202
    data = CommentIn(page="/x/2", body="Injected.", author="Eve\r\nBcc: victim@evil.example\r\n\r\nFake body",
                     email="eve@example.org")
    service.create_comment(data, "192.0.2.77", None)
    data = CommentIn(page="/x/3", body="Scripted.", author="<script>alert(1)</script>", email="mallory@example.org")
    service.create_comment(data, "192.0.2.78", None)
    assert Worker(service).drain() == 3
    messages = inbox.messages()
    assert len(messages) == 3
    for message in messages:
        assert message["Bcc"] is None and message["X-RcptTo"] == "mod@blog.example"
        assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])
    subjects = sorted(str(m["Subject"]).strip() for m in messages)  # a folded header unfolds with a space
    assert "[comments.example] Held for moderation: Eve Bcc: victim@evil.example Fake body on /x/2" in subjects
    assert "[comments.example] Held for moderation: Eve Bcc: victim@evil.example on /x/1" in subjects
    scripted = next(m for m in messages if "/x/3" in str(m["Subject"]))
    assert "<script>" not in html_of(scripted) and "&lt;script&gt;" in html_of(scripted)
    # The one-line rule holds for every header, whatever a site's template renders.
    built = mail.message(mail.Mail("a@b.example", "Hi\r\nBcc: x@evil.example", "y",
                                   headers={"X-Note": "1\r\nBcc: x@evil.example"}), "Comments <c@blog.example>")
    assert built["Bcc"] is None and b"\nBcc:" not in built.as_bytes()


class TestSmtpDown:
    @pytest.fixture
    def down(self, tmp_path: Path) -> MailServer:
        return MailServer(tmp_path / "later", free_port())  # nothing listens there yet

    @pytest.fixture
    def settings_overrides(self, down: MailServer) -> dict[str, Any]:
        return {**MAIL, "smtp_port": down.port}

    async def test_comments_are_accepted_at_full_speed_and_mail_goes_once_smtp_is_back(
        self, clients: Clients, service: Service, down: MailServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        # First a mail server that hangs: it takes connections and never answers. Posting must not notice.
        hung = socket.socket()
        hung.bind(("127.0.0.1", down.port))
        hung.listen(16)
        hung.setblocking(False)
        try:
            started = time.perf_counter()
            for n in range(10):
                assert (await post(clients, page=f"/down/{n}")).status_code == 202
            elapsed = time.perf_counter() - started
            with pytest.raises(BlockingIOError):
                hung.accept()  # nobody even tried to connect
        finally:
            hung.close()
        assert elapsed < 5, f"10 comments took {elapsed:.1f} s"

        worker = Worker(service)
        now = store.utcnow()
        assert worker.run_once(now) == 10
        rows = outbox_rows(service)
        assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
        assert {r.last_error for r in rows} == {"ConnectionRefusedError"}
        assert worker.run_once(now) == 0  # they wait for their next try

        down.start()
        try:
            assert worker.drain(now + timedelta(hours=1)) == 10
            assert worker.drain(now + timedelta(days=2)) == 0
            messages = down.messages()
        finally:
            down.stop()
        assert len(messages) == 10
        assert sorted(str(m["Subject"]).rsplit(" ", 1)[1] for m in messages) == sorted(f"/down/{n}" for n in range(10))
        assert {r.status for r in outbox_rows(service)} == {"done"}
        logged = [r.getMessage() for r in caplog.records if r.name.startswith("comments.notify")]
        assert logged and not any("@" in line for line in logged)  # failures logged, never an address


class TestTemplates:
    @pytest.fixture
    def settings_overrides(self, smtp: MailServer, tmp_path: Path) -> dict[str, Any]:
        folder = tmp_path / "mail"
        folder.mkdir()
        (folder / "held.subject").write_text("Moderate {{ comment.author }}, please\n")
        (folder / "held.txt").write_text("{{ comment.body }}\n{{ comment.links.approve }}\n")
        return {**MAIL, "smtp_port": smtp.port, "mail_templates": str(folder)}

    async def test_a_site_replaces_some_templates(self, clients: Clients, service: Service, inbox: MailServer) -> None:
        data = CommentIn(page="/t/1", body="Short.", author="Ann\x07", email="ann@example.org")
        service.create_comment(data, "192.0.2.70", None)  # an imported name may hold anything
        Worker(service).drain()
        (message,) = inbox.messages()
        assert message["Subject"] == "Moderate Ann, please"
        text = text_of(message)
        assert text.startswith("Short.\nhttps://comments.example/mail/moderate?t=") and "\x07" not in text
        assert "Spam score" in html_of(message)  # the built-in HTML part is still used
