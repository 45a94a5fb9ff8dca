"""Isso's Markdown made HTML before the sanitiser: inline markup rendered, blocks kept as typed,
nothing unsafe let through."""

from __future__ import annotations

from datetime import datetime

import pytest

from comments import importing
from comments.importers import ImportedComment


def rendered(text: str) -> str:
    item = ImportedComment(origin="isso", origin_id="1", page="/p/", parent_origin_id=None, status="approved",
                           created_at=datetime(2024, 1, 1), author="A", email="", url=None, ip=None,
                           user_agent=None, body=text, position=1, body_format="markdown")
    return importing.prepare(item).body_html


@pytest.mark.parametrize(("text", "html"), [
    ("**bold**, _em_ and ~~gone~~", "<p><strong>bold</strong>, <em>em</em> and <s>gone</s></p>"),
    ("one\ntwo\n\nthree", "<p>one<br>\ntwo</p>\n<p>three</p>"),
    ("see [the notes](https://notes.example.org/a)",
     '<p>see <a href="https://notes.example.org/a" rel="nofollow ugc noopener">the notes</a></p>'),
    ("`x < y`", "<p><code>x &lt; y</code></p>"),
    ("> not a quote\n- not a list", "<p>&gt; not a quote<br>\n- not a list</p>"),
    ("# not a heading", "<p># not a heading</p>"),
])
def test_inline_markdown_is_rendered_and_blocks_stay_text(text: str, html: str) -> None:
    assert rendered(text) == html


@pytest.mark.parametrize("text", [
    "[x](javascript:alert(1))",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    '<a href="javascript:alert(1)">x</a>',
    "![img](https://evil.example/x.png)",
])
def test_markdown_cannot_smuggle_markup_past_the_sanitiser(text: str) -> None:
    html = rendered(text)
    assert "<script" not in html and "onerror" not in html and "<img" not in html
    assert 'href="javascript' not in html and 'href="data' not in html
