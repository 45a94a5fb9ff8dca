"""The streaming readers of WordPress, Disqus and Isso exports: samples, bad input, memory."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comments import sanitize
from comments.importers import (
    ImportedComment, ImportFormatError, Item, Options, Problem, disqus, isso, parse, wordpress,
)
from comments.importers.checks import IdSet
from comments.importers.values import parse_date

DATA = Path(__file__).resolve().parent / "data"
WXR_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wxr-sample.xml"
DISQUS_SAMPLE = DATA / "disqus-sample.xml"
ISSO_SQL = DATA / "isso-sample.sql"


def records(items: Iterable[Item]) -> list[ImportedComment]:
    return [item for item in items if isinstance(item, ImportedComment)]


def problems(items: Iterable[Item]) -> list[Problem]:
    return [item for item in items if isinstance(item, Problem)]


def by_id(items: Iterable[Item]) -> dict[str, ImportedComment]:
    return {r.origin_id: r for r in records(items)}


def line_of(path: Path, text: str) -> int:
    """The 1-based line number of the first line containing text."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path.name}")


# ---- small WXR files built in the tests --------------------------------------------------

WXR_HEAD = """<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
  xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:wp="http://wordpress.org/export/{version}/">
<channel>
<title>Test</title>
<wp:wxr_version>{version}</wp:wxr_version>
<wp:base_site_url>https://site.example</wp:base_site_url>
"""
WXR_ITEM = """<item>
<title>Post</title>
<link>{link}</link>
<guid isPermaLink="false">{guid}</guid>
{comments}
</item>
"""


def wp_comment(comment_id: object = 1, **fields: object) -> str:
    """One <wp:comment>; a field given as None is left out."""
    values: dict[str, object] = {
        "comment_id": comment_id, "comment_author": "Ann", "comment_author_email": "ann@example.net",
        "comment_author_url": "", "comment_author_IP": "192.0.2.1",
        "comment_date": "2023-01-15 10:12:00", "comment_date_gmt": "2023-01-15 09:12:00",
        "comment_content": "Hello", "comment_approved": "1", "comment_type": "comment",
        "comment_parent": 0,
    }
    values.update(fields)
    inner = "".join(f"<wp:{key}><![CDATA[{value}]]></wp:{key}>\n"
                    for key, value in values.items() if value is not None)
    return f"<wp:comment>\n{inner}</wp:comment>\n"


def wxr(*comments: str, link: str = "https://site.example/2023/01/post/", guid: str = "https://site.example/?p=1",
        version: str = "1.2", items: str | None = None) -> str:
    body = items if items is not None else WXR_ITEM.format(link=link, guid=guid, comments="".join(comments))
    return WXR_HEAD.format(version=version) + body + "</channel>\n</rss>\n"


def write(tmp_path: Path, text: str | bytes, name: str = "export.xml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read_wxr(tmp_path: Path, *comments: str, options: Options | None = None, **kwargs: str) -> list[Item]:
    return list(wordpress.parse(write(tmp_path, wxr(*comments, **kwargs)), options))


def fatal(parser: object, path: Path, options: Options | None = None) -> ImportFormatError:
    with pytest.raises(ImportFormatError) as caught:
        list(parser.parse(path, options))  # type: ignore[attr-defined]
    return caught.value


# ---- the record type -------------------------------------------------------------------


def test_records_are_frozen_and_problems_become_fatal_for_the_report() -> None:
    error = ImportFormatError(12, "the file ends too early", column=3)
    assert error.problem == Problem(12, "the file ends too early", fatal=True)
    assert str(error) == "the file ends too early"
    with pytest.raises(ValueError):
        parse("blogger", "x.xml")


def test_an_imported_comment_cannot_be_changed(tmp_path: Path) -> None:
    record = records(read_wxr(tmp_path, wp_comment()))[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "spam"  # type: ignore[misc]


# ---- WordPress: the shared sample ---------------------------------------------------------


@pytest.fixture
def wxr_sample() -> Path:
    if not WXR_SAMPLE.is_file():
        pytest.skip("the shared WXR sample (shared/data/wxr-sample.xml beside the project) is absent")
    return WXR_SAMPLE


def test_wxr_sample_counts_and_statuses(wxr_sample: Path) -> None:
    items = list(wordpress.parse(wxr_sample))
    found = by_id(items)
    assert list(found) == ["1001", "1002", "1003", "1004", "1005", "1006", "1007", "2001", "2002"]
    assert Counter(r.status for r in found.values()) == {"approved": 6, "pending": 1, "spam": 1, "trash": 1}
    assert (found["1004"].status, found["1005"].status, found["1006"].status) == ("pending", "spam", "trash")
    assert problems(items) == [
        Problem(line_of(wxr_sample, "<wp:comment_id>2003<") - 1, "pingback", origin_id="2003", kind="skipped"),
    ]
    assert {r.origin for r in found.values()} == {"wordpress"}
    assert {r.source for r in found.values()} == {"https://blog.example.com"}
    assert {r.body_format for r in found.values()} == {"text"}


def test_wxr_sample_threading_pages_and_positions(wxr_sample: Path) -> None:
    found = by_id(wordpress.parse(wxr_sample))
    assert {i: r.parent_origin_id for i, r in found.items()} == {
        "1001": None, "1002": "1001", "1003": "1002", "1004": None, "1005": None,
        "1006": "1001", "1007": "1006", "2001": None, "2002": "2001",
    }
    assert {r.page for i, r in found.items() if i < "2"} == {"/2023/01/russia-casualties/"}
    assert {r.page for i, r in found.items() if i > "2"} == {"/2023/02/winter-notes/"}
    for origin_id, record in found.items():
        assert record.position == line_of(wxr_sample, f"<wp:comment_id>{origin_id}<") - 1


def test_wxr_sample_dates_are_gmt(wxr_sample: Path) -> None:
    found = by_id(wordpress.parse(wxr_sample))
    assert found["1001"].created_at == datetime(2023, 1, 15, 9, 12, 0)
    assert found["1003"].created_at == datetime(2023, 1, 15, 11, 2, 31)
    assert found["2002"].created_at == datetime(2023, 2, 3, 8, 0, 0)
    assert all(r.created_at.tzinfo is None for r in found.values())


def test_wxr_sample_people_text_and_unicode(wxr_sample: Path) -> None:
    found = by_id(wordpress.parse(wxr_sample))
    ann, zoe, bob = found["1001"], found["1002"], found["1003"]
    assert (ann.author, ann.email, ann.url, ann.ip, ann.user_agent) == (
        "Ann Example", "ann@example.net", "https://ann.example.net/", "192.0.2.10", None)
    assert ann.body == ("Thanks for pulling the numbers together.\n\n"
                        "One question: which sources did you use for the February figures?")
    assert zoe.author == "Zoë Łukasz-Ørsted"
    assert zoe.body == "Спасибо! Источники — в сноске 3. 🙏\nΕυχαριστώ · ありがとう · شكرا"
    assert (zoe.ip, zoe.url) == ("2001:db8::7", None)
    assert bob.author == "Bob O'Brien & Sons"  # stored HTML-escaped by WordPress
    assert found["1004"].body == "Your spreadsheet formula is off by one: if (a[b[0]]>1) { return; }"
    assert found["2002"].body == 'Yes &mdash; see the <a href="https://blog.example.com/print/">print page</a>.'


def test_wxr_sample_html_is_kept_as_written_and_sanitised_like_a_new_comment(wxr_sample: Path) -> None:
    body = by_id(wordpress.parse(wxr_sample))["1003"].body
    assert "<script>alert('xss')</script>" in body and 'onerror="alert(1)"' in body
    html = sanitize.render(body)
    for hostile in ("<script", "onerror", "javascript:", "onclick", "<img"):
        assert hostile not in html
    assert "<strong>table 2</strong>" in html and 'rel="nofollow ugc noopener"' in html


def test_wxr_sample_options_guid_pages_and_pings(wxr_sample: Path) -> None:
    items = list(wordpress.parse(wxr_sample, Options(page_from="guid", include_pings=True)))
    found = by_id(items)
    assert found["1001"].page == "https://blog.example.com/?p=101"
    assert found["2001"].page == "https://blog.example.com/?p=205"
    ping = found["2003"]
    assert (ping.status, ping.email, ping.author) == ("approved", "", "Another Blog » Winter reading list")
    assert problems(items) == []


# ---- WordPress: built files -----------------------------------------------------------------


def test_wxr_page_keys_from_links(tmp_path: Path) -> None:
    assert records(read_wxr(tmp_path, wp_comment(), link="https://site.example/?p=42"))[0].page == "/?p=42"
    assert records(read_wxr(tmp_path, wp_comment(), link="https://site.example"))[0].page == "/"
    page = records(read_wxr(tmp_path, wp_comment(), link="https://site.example/%D0%BF/#c"))[0].page
    assert page == "/%D0%BF/"  # as the browser's location.pathname has it


def test_wxr_link_after_the_comments_and_missing_link(tmp_path: Path) -> None:
    late = "<item><guid>g-1</guid>" + wp_comment(1) + "<link>https://site.example/late/</link></item>"
    assert records(read_wxr(tmp_path, items=late))[0].page == "/late/"
    no_link = "<item><guid>g-2</guid>" + wp_comment(2) + "</item>"
    items = read_wxr(tmp_path, items=no_link)
    assert records(items)[0].page == "g-2"
    assert [p.kind for p in problems(items)] == ["warning"] and "from its guid" in problems(items)[0].reason
    many = "<item><guid>g-3</guid>" + "".join(wp_comment(10 + n) for n in range(150)) + "<link>/l/</link></item>"
    assert Counter(r.page for r in records(read_wxr(tmp_path, items=many))) == {"/l/": 100, "g-3": 50}
    neither = "<item>" + wp_comment(3) + "</item>"
    assert [(p.reason, p.origin_id) for p in problems(read_wxr(tmp_path, items=neither))] == [("no page key", "3")]


def test_wxr_versions_1_0_and_1_1_are_read(tmp_path: Path) -> None:
    for version in ("1.0", "1.1"):
        assert len(records(read_wxr(tmp_path, wp_comment(), version=version))) == 1


def test_wxr_statuses_types_and_pings(tmp_path: Path) -> None:
    items = read_wxr(
        tmp_path,
        wp_comment(1, comment_approved="post-trashed"), wp_comment(2, comment_approved="weird"),
        wp_comment(3, comment_type="trackback"), wp_comment(4, comment_type="order_note"),
        wp_comment(5, comment_type=""), wp_comment(6, comment_type=None),
    )
    found = by_id(items)
    assert {i: r.status for i, r in found.items()} == {"1": "trash", "2": "pending", "5": "approved", "6": "approved"}
    assert [(p.origin_id, p.kind, p.reason) for p in problems(items)] == [
        ("2", "warning", "unknown status 'weird': imported as pending"),
        ("3", "skipped", "trackback"),
        ("4", "skipped", "comment type order_note"),
    ]


def test_wxr_parents_forward_missing_and_self(tmp_path: Path) -> None:
    items = read_wxr(tmp_path, wp_comment(1, comment_parent=2), wp_comment(2), wp_comment(3, comment_parent=999),
                     wp_comment(4, comment_parent=4), wp_comment(5, comment_parent="007"))
    found = by_id(items)
    # Parents are given as written; linking or re-parenting is the writer's job.
    assert {i: r.parent_origin_id for i, r in found.items()} == {"1": "2", "2": None, "3": "999", "4": None, "5": "7"}
    assert [(p.origin_id, p.kind) for p in problems(items)] == [("4", "warning")]


def test_wxr_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    items = read_wxr(tmp_path, wp_comment(7, comment_content="first"), wp_comment(7, comment_content="second"),
                     wp_comment("0007", comment_content="third"))
    assert [r.body for r in records(items)] == ["first"]
    assert [(p.kind, p.reason) for p in problems(items)] == [
        ("skipped", "duplicate id 7 (an earlier comment has it)")] * 2


def test_wxr_missing_and_bad_ids(tmp_path: Path) -> None:
    items = read_wxr(tmp_path, wp_comment(None), wp_comment("x" * 200))
    assert [(p.kind, p.reason) for p in problems(items)] == [
        ("failed", "missing comment id"), ("failed", "comment id longer than 100 characters")]


@pytest.mark.parametrize(("gmt", "expected"), [
    ("2023-01-15 09:12:00", datetime(2023, 1, 15, 9, 12)),
    ("2023-01-15T09:12:00Z", datetime(2023, 1, 15, 9, 12)),
    ("2023-01-15T10:12:00+01:00", datetime(2023, 1, 15, 9, 12)),
    ("2023-01-15 09:12:00.250", datetime(2023, 1, 15, 9, 12, 0, 250000)),
    ("2023-01-15 09:12", datetime(2023, 1, 15, 9, 12)),
    ("Sun, 15 Jan 2023 09:12:00 +0000", datetime(2023, 1, 15, 9, 12)),
    ("Sun, 15 Jan 2023 04:12:00 -0500", datetime(2023, 1, 15, 9, 12)),
])
def test_wxr_date_formats_accepted(tmp_path: Path, gmt: str, expected: datetime) -> None:
    assert records(read_wxr(tmp_path, wp_comment(comment_date_gmt=gmt)))[0].created_at == expected


@pytest.mark.parametrize("gmt", ["15/01/2023 09:12", "yesterday", "2023-13-45 99:00:00", "1673773920"])
def test_wxr_odd_dates_are_reported(tmp_path: Path, gmt: str) -> None:
    items = read_wxr(tmp_path, wp_comment(comment_date_gmt=gmt))
    assert records(items) == []
    [problem] = problems(items)
    assert (problem.kind, problem.origin_id) == ("failed", "1") and problem.reason.startswith("unreadable date")


def test_wxr_missing_dates(tmp_path: Path) -> None:
    items = read_wxr(
        tmp_path,
        wp_comment(1, comment_date="", comment_date_gmt="0000-00-00 00:00:00"),
        wp_comment(2, comment_date_gmt=None, comment_date=None),
        # Only a local date, before any comment shows the site's offset: taken as UTC.
        wp_comment(3, comment_date="2023-01-15 10:00:00", comment_date_gmt="0000-00-00 00:00:00"),
        wp_comment(4, comment_date="2023-01-15 11:30:00", comment_date_gmt="2023-01-15 10:30:00"),
        # After comment 4 showed local = UTC + 1 h, a local-only date is shifted by it.
        wp_comment(5, comment_date="2023-01-15 12:00:00", comment_date_gmt=""),
    )
    found = by_id(items)
    assert found["3"].created_at == datetime(2023, 1, 15, 10, 0)
    assert found["5"].created_at == datetime(2023, 1, 15, 11, 0)
    assert [(p.origin_id, p.kind, p.reason) for p in problems(items)] == [
        ("1", "failed", "missing date"),
        ("2", "failed", "missing date"),
        ("3", "warning", "no comment_date_gmt: comment_date taken as UTC"),
        ("5", "warning", "no comment_date_gmt: comment_date shifted by the site's offset +01:00"),
    ]


def test_wxr_emails(tmp_path: Path) -> None:
    comments = (wp_comment(1, comment_author_email="Ann@Example.NET"), wp_comment(2, comment_author_email=""),
                wp_comment(3, comment_author_email="not an address"), wp_comment(4, comment_author_email="a@b@c"))
    items = read_wxr(tmp_path, *comments)
    assert {i: r.email for i, r in by_id(items).items()} == {"1": "Ann@example.net", "2": ""}
    assert [(p.origin_id, p.kind, p.reason) for p in problems(items)] == [
        ("3", "failed", "invalid email"), ("4", "failed", "invalid email")]
    allowed = read_wxr(tmp_path, *comments, options=Options(allow_invalid_emails=True))
    assert by_id(allowed)["3"].email == "not an address"
    assert [(p.origin_id, p.kind) for p in problems(allowed)] == [("3", "warning"), ("4", "warning")]


def test_wxr_websites_addresses_and_agents(tmp_path: Path) -> None:
    items = read_wxr(
        tmp_path,
        wp_comment(1, comment_author_url="bob.example", comment_author_IP="2001:DB8::0:1",
                   comment_agent="Mozilla/5.0 (X11)"),
        wp_comment(2, comment_author_url="javascript:alert(1)", comment_author_IP="not-an-ip",
                   comment_agent="A" * 5000),
    )
    one, two = by_id(items)["1"], by_id(items)["2"]
    assert (one.url, one.ip, one.user_agent) == ("https://bob.example", "2001:db8::1", "Mozilla/5.0 (X11)")
    assert (two.url, two.ip, two.user_agent) == (None, None, "A" * 512)
    assert [(p.origin_id, p.reason) for p in problems(items)] == [
        ("2", "website dropped: only http and https addresses are accepted"),
        ("2", "address dropped: not an IP address"),
    ]


def test_wxr_absurdly_long_fields(tmp_path: Path) -> None:
    long_page = read_wxr(tmp_path, wp_comment(1), link="https://site.example/" + "p" * 1100)
    assert [(p.origin_id, p.reason) for p in problems(long_page)] == [("1", "page key longer than 1024 characters")]
    items = read_wxr(
        tmp_path,
        wp_comment(1, comment_author="A" * 246), wp_comment(2, comment_content="b" * 10_001),
        wp_comment(3, comment_content="  \n "), wp_comment(4, comment_content="c" * 10_000),
        wp_comment(5, comment_author="A" * 245),
    )
    assert sorted(by_id(items)) == ["4", "5"]
    assert [(p.origin_id, p.reason) for p in problems(items)] == [
        ("1", "author longer than 245 characters"), ("2", "body longer than 10000 characters"),
        ("3", "empty body")]
    allowed = read_wxr(tmp_path, wp_comment(2, comment_content="b" * 10_001), options=Options(allow_long_bodies=True))
    assert len(records(allowed)[0].body) == 10_001
    shorter = read_wxr(tmp_path, wp_comment(2, comment_content="b" * 501), options=Options(max_body_chars=500))
    assert [p.reason for p in problems(shorter)] == ["body longer than 500 characters"]


def test_wxr_huge_body_is_refused_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with path.open("w", encoding="utf-8") as out:
        out.write(WXR_HEAD.format(version="1.2") + "<item><link>https://s.example/p/</link>"
                  "<wp:comment><wp:comment_id>1</wp:comment_id><wp:comment_content><![CDATA[")
        for _ in range(20):
            out.write("x" * 1_000_000)
        out.write("]]></wp:comment_content><wp:comment_date_gmt>2023-01-01 00:00:00</wp:comment_date_gmt>"
                  "</wp:comment></item></channel></rss>")
    for options, limit in ((Options(), 10_000), (Options(allow_long_bodies=True), 1_000_000)):
        tracemalloc.start()
        try:
            items = list(wordpress.parse(path, options))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [p.reason for p in problems(items)] == [f"body longer than {limit} characters"]
        assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 20 MB body"


# ---- WordPress: files that cannot be read as a whole ----------------------------------------------


def test_wxr_truncated_file(tmp_path: Path, wxr_sample: Path) -> None:
    data = wxr_sample.read_bytes()
    path = write(tmp_path, data[: len(data) // 2])
    read: list[Item] = []
    with pytest.raises(ImportFormatError) as caught:
        for item in wordpress.parse(path):
            read.append(item)
    error = caught.value
    assert error.message.startswith("the file ends too early (truncated?) at line ")
    assert error.position == data[: len(data) // 2].count(b"\n") + 1 and error.column is not None
    assert error.problem.fatal
    # What came before the break was yielded: a writer that must not write a broken file
    # runs a dry pass first.
    assert read and all(isinstance(item, ImportedComment) for item in read)


def test_wxr_malformed_xml(tmp_path: Path) -> None:
    text = wxr(wp_comment()).replace("</wp:comment_author>", "</wp:comment_autor>")
    error = fatal(wordpress, write(tmp_path, text))
    assert error.message.startswith(f"malformed XML at line {error.position}, column ")
    assert "mismatched tag" in error.message


@pytest.mark.parametrize("content", [
    b"", b"hello, this is text", b"SQLite format 3\x00\x10\x00\x01\x01\x00@  ", "{\"a\": 1}".encode(),
    b"\xff\xfe<\x00r\x00",
])
def test_wxr_not_xml(tmp_path: Path, content: bytes) -> None:
    error = fatal(wordpress, write(tmp_path, content))
    assert error.message.startswith("this is not a WordPress export (WXR): not an XML file ("), error.message


def test_wxr_wrong_formats(tmp_path: Path) -> None:
    error = fatal(wordpress, DISQUS_SAMPLE)
    assert error.message == "this is not a WordPress export (WXR): the root element is <disqus>, not <rss>"
    assert error.position == line_of(DISQUS_SAMPLE, "<disqus xmlns")
    feed = '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>x</title></item></channel></rss>'
    assert fatal(wordpress, write(tmp_path, feed)).message == (
        "this is not a WordPress export (WXR): no wp:wxr_version before the first item")
    empty_feed = '<rss version="2.0"><channel><title>t</title></channel></rss>'
    assert fatal(wordpress, write(tmp_path, empty_feed)).message == (
        "this is not a WordPress export (WXR): it has no wp:wxr_version")
    assert fatal(wordpress, write(tmp_path, wxr(wp_comment(), version="2.0"))).message == (
        "this is not a WordPress export (WXR): unsupported WXR version '2.0' (versions 1.x are read)")


def test_wxr_missing_file(tmp_path: Path) -> None:
    assert fatal(wordpress, tmp_path / "nope.xml").message == "cannot read the file: No such file or directory"


BOMB = """<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<rss xmlns:wp="http://wordpress.org/export/1.2/"><channel><wp:wxr_version>1.2</wp:wxr_version>
<item><link>https://s.example/p/</link><wp:comment><wp:comment_id>1</wp:comment_id>
<wp:comment_content>&f;</wp:comment_content></wp:comment></item></channel></rss>
"""


def test_wxr_entity_bomb_is_refused_without_expansion(tmp_path: Path) -> None:
    began = time.perf_counter()
    tracemalloc.start()
    try:
        error = fatal(wordpress, write(tmp_path, BOMB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.message.startswith("refused: the file declares a document type or entities (line 2)")
    assert error.position == 2
    assert peak < 2**20 and time.perf_counter() - began < 2


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE rss [<!ENTITY secret SYSTEM "file://{path}">]>',
    '<!DOCTYPE rss SYSTEM "file://{path}">',
    '<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>',
])
def test_wxr_external_entities_are_never_read(tmp_path: Path, doctype: str) -> None:
    secret = write(tmp_path, "TOP-SECRET-CONTENT", "secret.txt")
    text = wxr(wp_comment(comment_content="&secret;")).replace(
        '<?xml version="1.0" encoding="UTF-8" ?>\n',
        '<?xml version="1.0" encoding="UTF-8" ?>\n' + doctype.format(path=secret) + "\n")
    error = fatal(wordpress, write(tmp_path, text))
    assert error.message.startswith("refused: the file declares a document type or entities")
    assert "TOP-SECRET" not in error.message


def test_wxr_undefined_entity_is_malformed(tmp_path: Path) -> None:
    text = wxr(wp_comment()).replace("<![CDATA[Hello]]>", "Hello &nbsp; there")
    assert "undefined entity" in fatal(wordpress, write(tmp_path, text)).message


def test_wxr_options_are_checked() -> None:
    with pytest.raises(ValueError):
        list(wordpress.parse(DISQUS_SAMPLE, Options(page_from="identifier")))


# ---- never a traceback ------------------------------------------------------------------


def _only_items_or_format_errors(parser: object, path: Path) -> None:
    try:
        for item in parser.parse(path):  # type: ignore[attr-defined]
            assert isinstance(item, ImportedComment | Problem)
    except ImportFormatError as error:
        assert error.message


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0), edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)),
                                                      max_size=4))
def test_damaged_files_give_items_or_one_clear_error(tmp_path: Path, cut: int, edits: list[tuple[int, bytes]]) -> None:
    for source, parser in ((WXR_SAMPLE, wordpress), (DISQUS_SAMPLE, disqus)):
        if not source.is_file():
            continue
        data = bytearray(source.read_bytes())
        for position, replacement in edits:
            at = position % len(data)
            data[at: at + len(replacement)] = replacement
        data = data[: len(data) - cut % (len(data) // 4)]
        _only_items_or_format_errors(parser, write(tmp_path, bytes(data), "damaged.xml"))


# ---- Disqus ----------------------------------------------------------------------------


def test_disqus_sample() -> None:
    items = list(disqus.parse(DISQUS_SAMPLE))
    found = by_id(items)
    assert list(found) == ["5001", "5002", "5003", "5004", "5005", "5007", "5009"]
    assert {i: r.status for i, r in found.items()} == {
        "5001": "approved", "5002": "approved", "5003": "approved", "5004": "spam", "5005": "trash",
        "5007": "approved", "5009": "approved"}
    assert {i: r.parent_origin_id for i, r in found.items()} == {
        "5001": None, "5002": "5003", "5003": "5001", "5004": None, "5005": "5001", "5007": None, "5009": None}
    assert {i: r.page for i, r in found.items()} == {
        "5001": "/2023/01/russia-casualties/", "5002": "/2023/01/russia-casualties/",
        "5003": "/2023/01/russia-casualties/", "5004": "/2023/01/russia-casualties/",
        "5005": "/2023/01/russia-casualties/", "5007": "/?p=205", "5009": "/2023/03/spring/"}
    assert [(p.origin_id, p.kind, p.reason) for p in problems(items)] == [
        ("5006", "skipped", "deleted in Disqus, no text"),
        ("5008", "failed", "invalid email"),
        ("5001", "skipped", "duplicate id 5001 (an earlier comment has it)"),
        ("5010", "failed", "unknown thread 7999"),
    ]
    for origin_id, record in found.items():
        assert record.position == line_of(DISQUS_SAMPLE, f'<post dsq:id="{origin_id}">')
    assert problems(items)[-1].position == line_of(DISQUS_SAMPLE, '<post dsq:id="5010">')


def test_disqus_sample_fields() -> None:
    found = by_id(disqus.parse(DISQUS_SAMPLE))
    ann = found["5001"]
    assert (ann.author, ann.email, ann.ip, ann.url, ann.user_agent, ann.source, ann.body_format) == (
        "Ann Example", "ann@example.net", "192.0.2.10", None, None, "fieldnotes", "html")
    assert ann.created_at == datetime(2023, 1, 15, 9, 12)
    assert ann.body == "<p>Thanks for pulling the numbers together.</p><p>Which sources did you use?</p>"
    assert found["5002"].author == "Zoë Łukasz-Ørsted" and found["5002"].ip == "2001:db8::7"
    assert found["5002"].body == "<p>Спасибо! Ευχαριστώ · ありがとう 🙏</p>"
    assert found["5003"].author == "bob_obrien"  # no name: the username
    assert found["5007"].email == "" and found["5007"].author == "Łucja"


def test_disqus_options() -> None:
    found = by_id(disqus.parse(DISQUS_SAMPLE, Options(page_from="identifier", allow_invalid_emails=True)))
    assert found["5001"].page == "post-101"
    assert found["5007"].page == "/?p=205"  # the thread has no identifier: its link
    assert found["5009"].page == "spring"
    assert found["5008"].email == "not-an-address"
    with pytest.raises(ValueError):
        list(disqus.parse(DISQUS_SAMPLE, Options(page_from="guid")))


DISQUS_HEAD = '<disqus xmlns="http://disqus.com" xmlns:dsq="http://disqus.com/disqus-internals">'


def dsq_post(post_id: int, thread: int, created: str = "2023-01-01T00:00:00Z", message: str = "<p>Hi</p>") -> str:
    return (f'<post dsq:id="{post_id}"><message><![CDATA[{message}]]></message><createdAt>{created}</createdAt>'
            f"<isDeleted>false</isDeleted><isSpam>false</isSpam><author><name>N</name><email>n@example.com</email>"
            f'</author><ipAddress>192.0.2.3</ipAddress><thread dsq:id="{thread}"/></post>')


def test_disqus_bad_posts(tmp_path: Path) -> None:
    text = (DISQUS_HEAD + '<thread dsq:id="1"><id>x</id></thread>'
            '<thread dsq:id="2"><link>https://s.example/a/</link></thread>'
            + dsq_post(10, 1) + dsq_post(11, 2, created="") + dsq_post(12, 2, created="March 3rd")
            + dsq_post(13, 2, message="m" * 10_001) + dsq_post(14, 2, created="2023-01-01T01:00:00+01:00")
            + "</disqus>")
    items = list(disqus.parse(write(tmp_path, text)))
    assert [(p.origin_id, p.reason) for p in problems(items)] == [
        ("10", "thread 1 has no link"), ("11", "missing date"), ("12", "unreadable date 'March 3rd'"),
        ("13", "body longer than 10000 characters")]
    assert records(items)[0].created_at == datetime(2023, 1, 1, 0, 0)


def test_disqus_wrong_formats_and_damage(tmp_path: Path, wxr_sample: Path) -> None:
    assert fatal(disqus, wxr_sample).message == (
        "this is not a Disqus export: the root element is <rss>, not <disqus>")
    assert fatal(disqus, write(tmp_path, "<disqus><post/></disqus>")).message == (
        "this is not a Disqus export: the root element <disqus> is not in the Disqus namespace")
    assert fatal(disqus, write(tmp_path, b"\x00\x01binary")).message.startswith(
        "this is not a Disqus export: not an XML file (")
    data = DISQUS_SAMPLE.read_bytes()
    error = fatal(disqus, write(tmp_path, data[: len(data) * 2 // 3]))
    assert error.message.startswith("the file ends too early (truncated?)")
    bomb = BOMB.replace("<rss", "<disqus").replace("</rss>", "</disqus>")
    assert fatal(disqus, write(tmp_path, bomb)).message.startswith("refused: ")


def test_disqus_posts_before_their_threads_are_read_in_a_second_pass(tmp_path: Path) -> None:
    posts = "".join(dsq_post(100 + n, 1 + n % 3) for n in range(30))
    threads = "".join(f'<thread dsq:id="{n}"><link>https://s.example/{n}/</link></thread>' for n in (1, 2))
    items = list(disqus.parse(write(tmp_path, DISQUS_HEAD + posts + threads + "</disqus>")))
    assert len(records(items)) == 20
    assert Counter(r.page for r in records(items)) == {"/1/": 10, "/2/": 10}
    assert Counter(p.reason for p in problems(items)) == {"unknown thread 3": 10}


# ---- Isso ------------------------------------------------------------------------------


def isso_db(tmp_path: Path, extra_sql: str = "", name: str = "isso.db") -> Path:
    path = tmp_path / name
    connection = sqlite3.connect(path)
    try:
        connection.executescript(ISSO_SQL.read_text(encoding="utf-8") + extra_sql)
    finally:
        connection.close()
    return path


def test_isso_sample(tmp_path: Path) -> None:
    items = list(isso.parse(isso_db(tmp_path)))
    found = by_id(items)
    assert list(found) == ["1", "2", "3", "5", "6", "7", "10"]
    assert {i: r.status for i, r in found.items()} == {
        "1": "approved", "2": "approved", "3": "pending", "5": "approved", "6": "trash", "7": "approved",
        "10": "approved"}
    assert {i: r.parent_origin_id for i, r in found.items()} == {
        "1": None, "2": "1", "3": None, "5": "4", "6": None, "7": None, "10": "7"}
    assert [(p.position, p.origin_id, p.kind, p.reason) for p in problems(items)] == [
        (4, "4", "skipped", "deleted in Isso, no text"),
        (8, "8", "failed", "its thread is missing from the threads table"),
        (9, "9", "failed", "invalid email"),
        (10, "10", "warning", "website dropped: only http and https addresses are accepted"),
    ]
    assert [r.position for r in found.values()] == [1, 2, 3, 5, 6, 7, 10]


def test_isso_sample_fields(tmp_path: Path) -> None:
    found = by_id(isso.parse(isso_db(tmp_path)))
    ann = found["1"]
    assert ann.page == "/2023/01/russia-casualties/" and found["7"].page == "/2023/02/winter-notes/"
    assert ann.created_at == datetime(2023, 1, 15, 9, 12, 0, 500000)
    assert (ann.author, ann.email, ann.url, ann.ip, ann.user_agent) == (
        "Ann Example", "ann@example.net", "https://ann.example.net", "192.0.2.0", None)
    assert ann.body == "Thanks for pulling the numbers together.\n\nWhich **sources** did you use?"
    assert (ann.source, ann.body_format, ann.origin) == ("5e55103c0ffee5e55103c0ffee5e5510", "markdown", "isso")
    anonymous = found["2"]
    assert (anonymous.author, anonymous.email, anonymous.ip) == ("", "", "2001:db8::")
    assert anonymous.body == "Спасибо! Ευχαριστώ · ありがとう 🙏"


def test_isso_is_opened_read_only(tmp_path: Path) -> None:
    path = isso_db(tmp_path)
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in tmp_path.iterdir()))
    assert len(records(isso.parse(path))) == 7
    assert (path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in tmp_path.iterdir())) == before
    path.chmod(0o444)
    assert len(records(isso.parse(path))) == 7


def test_isso_bad_rows(tmp_path: Path) -> None:
    path = isso_db(tmp_path, """
        INSERT INTO comments VALUES (1, 11, NULL, 1675587600.0, NULL, 3, '192.0.2.0', 'Odd mode', 'A', '', NULL, 0, 0, x'00', 0);
        INSERT INTO comments VALUES (1, 12, NULL, 1675587600.0, NULL, 1, '192.0.2.0', 'bell' || char(7), 'A', '', NULL, 0, 0, x'00', 0);
        INSERT INTO comments VALUES (1, 13, NULL, 1675587600.0, NULL, 1, '192.0.2.0', CAST(x'ff' AS TEXT), 'A', '', NULL, 0, 0, x'00', 0);
        INSERT INTO comments VALUES (1, 14, NULL, 1e300, NULL, 1, '192.0.2.0', 'Far future', 'A', '', NULL, 0, 0, x'00', 0);
        INSERT INTO comments VALUES (1, 15, NULL, 'soon', NULL, 1, '192.0.2.0', 'Text date', 'A', '', NULL, 0, 0, x'00', 0);
        INSERT INTO comments VALUES (1, 16, 16, 1675587600.0, NULL, 1, '192.0.2.0', 'Own parent', 'A', '', NULL, 0, 0, x'00', 0);
    """)
    items = list(isso.parse(path))
    assert [(p.origin_id, p.kind, p.reason) for p in problems(items)][-6:] == [
        ("11", "warning", "unknown Isso mode 3: imported as pending"),
        ("12", "failed", "body contains control characters"),
        ("13", "failed", "text that is not valid UTF-8"),
        ("14", "failed", "unreadable timestamp '1e+300'"),
        ("15", "failed", "unreadable timestamp 'soon'"),
        ("16", "warning", "comment is its own parent: made top level"),
    ]
    assert by_id(items)["11"].status == "pending" and by_id(items)["16"].parent_origin_id is None


def test_isso_wrong_files(tmp_path: Path) -> None:
    assert fatal(isso, write(tmp_path, "just text", "text.db")).message.startswith(
        "this is not an Isso database: not an SQLite database (")
    assert fatal(isso, DISQUS_SAMPLE).message.startswith("this is not an Isso database: not an SQLite database (")
    other = tmp_path / "other.db"
    connection = sqlite3.connect(other)
    connection.executescript("CREATE TABLE comment (id INTEGER PRIMARY KEY); CREATE TABLE threads (id, uri);")
    connection.close()
    assert fatal(isso, other).message == "this is not an Isso database: it has no comments table"
    older = tmp_path / "older.db"
    connection = sqlite3.connect(older)
    connection.executescript("CREATE TABLE comments (tid, id, text); CREATE TABLE threads (id, uri);")
    connection.close()
    assert fatal(isso, older).message == (
        "this is not an Isso database: its comments table has no author, created, email, mode, parent, "
        "remote_addr, website")
    assert fatal(isso, tmp_path / "missing.db").message == "cannot read the file: no such file"
    assert fatal(isso, tmp_path).message == "cannot read the file: no such file"


def test_isso_through_the_dispatcher(tmp_path: Path) -> None:
    assert len(records(parse("isso", isso_db(tmp_path)))) == 7


# ---- shared pieces ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
       minutes=st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_parse_date_reads_any_offset_as_utc(moment: datetime, minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    local = moment.replace(tzinfo=timezone.utc).astimezone(zone)
    assert parse_date(local.isoformat()) == moment
    assert parse_date(local.isoformat(" ")) == moment
    assert parse_date(moment.isoformat(" ")) == moment


def test_id_set_small_large_and_text() -> None:
    ids = IdSet()
    for value in ("1", "7", "134217727", "134217728", "99999999999999", "abc"):
        assert ids.add(value)
        assert not ids.add(value)
    assert ids.add("8") and ids.add("0")


# ---- bounded memory ------------------------------------------------------------------------


def generate_wxr(path: Path, comments: int, per_post: int = 100) -> None:
    """A WXR file with this many short comments, written as it goes."""
    with path.open("w", encoding="utf-8") as out:
        out.write(WXR_HEAD.format(version="1.2"))
        for first in range(1, comments + 1, per_post):
            out.write(f"<item><link>https://s.example/p{first}/</link>\n")
            for n in range(first, min(first + per_post, comments + 1)):
                parent = n - 1 if n % 3 == 0 else 0
                out.write(
                    f"<wp:comment><wp:comment_id>{n}</wp:comment_id><wp:comment_author><![CDATA[R{n % 500}]]>"
                    f"</wp:comment_author><wp:comment_author_email>r{n % 500}@mail.example</wp:comment_author_email>"
                    f"<wp:comment_author_IP>192.0.2.{n % 250}</wp:comment_author_IP><wp:comment_date_gmt>"
                    f"2023-01-01 00:00:00</wp:comment_date_gmt><wp:comment_content><![CDATA[Comment {n}: "
                    f"words and <em>more</em> words.]]></wp:comment_content><wp:comment_approved>1"
                    f"</wp:comment_approved><wp:comment_parent>{parent}</wp:comment_parent></wp:comment>\n")
            out.write("</item>\n")
        out.write("</channel></rss>\n")


def traced_peak(items: Iterator[Item]) -> tuple[int, int]:
    """(records, peak bytes allocated) while the items are consumed one by one."""
    count = 0
    tracemalloc.start()
    try:
        for item in items:
            count += isinstance(item, ImportedComment)
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    generate_wxr(small, 2_000)
    generate_wxr(large, 20_000)
    small_count, small_peak = traced_peak(wordpress.parse(small))
    large_count, large_peak = traced_peak(wordpress.parse(large))
    assert (small_count, large_count) == (2_000, 20_000)
    assert large_peak < small_peak + 512 * 1024, (small_peak, large_peak)
    assert large_peak < 4 * 2**20


CHILD = """
import resource, sys
from comments.importers import ImportedComment, wordpress
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(isinstance(item, ImportedComment) for item in wordpress.parse(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, before, after)
"""


@pytest.mark.slow
def test_memory_stays_bounded_on_200000_comments(tmp_path: Path) -> None:
    # A process of its own, so that its peak resident size (expat's buffers included, which
    # tracemalloc does not see) is the parse's alone; tracemalloc would make this 4 times slower.
    path = tmp_path / "big.xml"
    generate_wxr(path, 200_000)
    assert path.stat().st_size > 80 * 2**20
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120,
                          check=True)
    count, before, after = (int(word) for word in done.stdout.split())
    assert count == 200_000
    assert (after - before) * 1024 < 50 * 2**20, f"resident size grew by {(after - before) / 1024:.1f} MiB"
