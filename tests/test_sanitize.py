"""Tests for comments.sanitize: the policy, a hostile corpus, properties, nh3, the fast path."""

import html
import random
import re
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import nh3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comments.sanitize import (
    POLICY_VERSION,
    count_links,
    fast_path_eligible,
    paragraphs,
    render,
    render_bleach,
    render_fast,
    render_fast_markup,
    sanitize,
)

REL = 'rel="nofollow ugc noopener"'

# ---------------------------------------------------------------------------
# The allowlist checker. Written from API.md, not from comments.sanitize.

ALLOWED = {
    "a": {"href", "title", "rel"},
    "abbr": {"title"},
    "blockquote": {"cite"},
    "q": {"cite"},
    **{tag: set() for tag in ("b", "cite", "code", "del", "em", "i", "s", "strike", "strong", "pre", "p", "br")},
}
# Elements whose start tag closes an open <p>: a tree with one of them inside a
# <p> cannot come back from its own serialisation.
CLOSES_P = {"p", "blockquote", "pre"}
REQUIRED_REL = {"nofollow", "ugc", "noopener"}

_TAG = re.compile(r'<(/?)([a-z]+)((?: [a-z]+="[^"<]*")*)>')
_STRICT_HREF = re.compile(r"^(?:https?://[^\s/\\?#]|mailto:\S)", re.IGNORECASE)
_STRICT_CITE = re.compile(r"^https?://[^\s/\\?#]", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"
)
_DEFAULT_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
_DEFAULT_IGNORABLE |= set(range(0x180B, 0x1810)) | set(range(0xFE00, 0xFE10)) | set(range(0xE0100, 0xE01F0))


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cf", "Zs", "Zl", "Zp"} or ord(char) in _DEFAULT_IGNORABLE


def url_problem(value: str, schemes: set[str], strict: re.Pattern) -> str | None:
    """Why a URL attribute value (as a parser decoded it) is not acceptable, or None."""
    if not strict.match(value):
        return f"not absolute {sorted(schemes)}: {value!r}"
    twice = html.unescape(value)
    folded = unicodedata.normalize("NFKC", twice)
    visible = "".join(char for char in folded if not _invisible(char))
    browser = re.sub(r"[\t\n\r]", "", value.strip("\x00- "))
    for variant in (value, browser, twice, folded, visible):
        scheme = _SCHEME.match(variant)
        if scheme is None or scheme[1].lower() not in schemes:
            return f"scheme changes to {variant!r} from {value!r}"
    return None


class _TreeCheck(HTMLParser):
    """Records every way a fragment strays from the allowlist or from canonical structure."""

    def __init__(self, require_href: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.require_href = require_href
        self.problems: list[str] = []
        self.stack: list[str] = []
        self.after_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.after_pre = tag == "pre"
        if tag not in ALLOWED:
            self.problems.append(f"element <{tag}>")
            return
        names = [name for name, _ in attrs]
        if len(set(names)) != len(names):
            self.problems.append(f"duplicate attribute on <{tag}>: {names}")
        values = {name: value or "" for name, value in attrs}
        for name in values.keys() - ALLOWED[tag]:
            self.problems.append(f"attribute {name} on <{tag}>")
        if "href" in values:
            self._url(values["href"], {"http", "https", "mailto"}, _STRICT_HREF)
        if "cite" in values:
            self._url(values["cite"], {"http", "https"}, _STRICT_CITE)
        if tag == "a":
            if self.require_href and "href" not in values:
                self.problems.append("<a> without href")
            if not REQUIRED_REL <= set(values.get("rel", "").split()):
                self.problems.append(f"<a> with rel {values.get('rel')!r}")
            if "a" in self.stack:
                self.problems.append("<a> inside <a>")
        if tag in CLOSES_P and "p" in self.stack:
            self.problems.append(f"<{tag}> inside <p>")
        if tag != "br":
            self.stack.append(tag)

    def _url(self, value: str, schemes: set[str], strict: re.Pattern) -> None:
        problem = url_problem(value, schemes, strict)
        if problem:
            self.problems.append(problem)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.problems.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        self.after_pre = False
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> does not close {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.after_pre and data.startswith("\n"):
            self.problems.append("<pre> followed by a newline, which a parser drops")
        self.after_pre = False

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"unknown declaration {data!r}")


def check(fragment: str, require_href: bool = True, hygiene: bool = True) -> list[str]:
    """Every way `fragment` breaks the output contract; empty when it holds.

    Lexically, every `<` starts a tag written the canonical way (lower-case
    allowlisted name, "-quoted attribute values without `<`), and text has no
    raw `>`; with `hygiene`, no control, bidi-override or noncharacter code
    points either. As a
    tree (html.parser, which decodes references once, as a browser does):
    allowlisted elements and attributes only, no comments or declarations,
    properly nested, nothing that closes a <p> inside one, no link in a link,
    absolute http/https/mailto hrefs and http(s) cites that keep their scheme
    after a second decode, NFKC and removal of invisible characters, and every
    <a> with rel tokens nofollow, ugc and noopener.
    """
    problems = []
    position = 0
    while (start := fragment.find("<", position)) != -1:
        if ">" in fragment[position:start]:
            problems.append(f"raw > in text at {position}")
        tag = _TAG.match(fragment, start)
        if tag is None:
            problems.append(f"not a canonical tag at {start}: {fragment[start:start + 40]!r}")
            break
        if tag[2] not in ALLOWED or (tag[1] and (tag[3] or tag[2] == "br")):
            problems.append(f"tag {tag[0]!r}")
        position = tag.end()
    if ">" in fragment[position:]:
        problems.append("raw > in text at the end")
    if hygiene and _FORBIDDEN_CHARS.search(fragment):
        problems.append(f"forbidden character {_FORBIDDEN_CHARS.search(fragment)[0]!r}")
    tree = _TreeCheck(require_href)
    tree.feed(fragment)
    tree.close()
    problems += tree.problems
    if tree.stack:
        problems.append(f"unclosed {tree.stack}")
    return problems


# ---------------------------------------------------------------------------
# The hostile corpus.

_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _unescape_line(line: str) -> str:
    def replace(match: re.Match) -> str:
        code = match[1] or match[2] or match[3]
        return chr(int(code, 16)) if code else _SIMPLE_ESCAPES[match[4]]

    return _ESCAPE.sub(replace, line)


def _load_vectors() -> list[str]:
    lines = (Path(__file__).parent / "data" / "hostile_vectors.txt").read_text(encoding="utf-8").splitlines()
    return [_unescape_line(line) for line in lines if line and line != "#" and not line.startswith("# ")]


VECTORS = _load_vectors()


def test_corpus_is_large_and_loaded() -> None:
    assert len(VECTORS) >= 100
    assert "<a href=\"jav\tascript:alert('XSS');\">x</a>" in VECTORS
    assert "a\ud800b\udfff" in VECTORS


def test_checker_rejects_what_it_must() -> None:
    # The checker is only worth something if it fails on bad output.
    bad = {
        '<a href="/x" rel="nofollow ugc noopener">x</a>': "absolute",
        '<a href="javascript&amp;colon;x" rel="nofollow ugc noopener">x</a>': "absolute",
        '<a href="http://x.example" rel="nofollow">x</a>': "rel",
        '<a href="http://x.example" rel="nofollow ugc noopener" onclick="x">x</a>': "onclick",
        "<p><blockquote>x</blockquote></p>": "inside <p>",
        "<p>x</p></p>": "does not close",
        "<b>x": "unclosed",
        "<!-- x -->": "canonical",
        "<p>x<script>y</script></p>": "script",
        "<pre>\nx</pre>": "newline",
        "x > y": "raw >",
        '<q cite="mailto:a@b.example">x</q>': "absolute",
        "<b>\u202e</b>": "forbidden",
        "<a>x</a>": "without href",
    }
    for fragment, expected in bad.items():
        assert any(expected in problem for problem in check(fragment)), fragment
    good = '<p><a href="HTTPS://x.example/?q=1&amp;r=&lt;" title="t" rel="ugc nofollow noopener">x</a></p>'
    assert check(good) == []


@pytest.mark.parametrize("vector", VECTORS)
def test_hostile_vector(vector: str) -> None:
    started = time.perf_counter()
    body_html = render(vector)
    assert time.perf_counter() - started < 1
    assert check(body_html) == []
    assert sanitize(body_html) == body_html  # idempotent
    assert body_html == render_bleach(vector)
    for word in ("<script", "<svg", "<math", "<style", "<iframe", "<img", "<!--"):
        assert word not in body_html.lower()


# ---------------------------------------------------------------------------
# The behaviours notes/sanitising.md, section 2 lists as biting, one by one.


@pytest.mark.parametrize(
    "href",
    ["/x", "//evil.example/", "/\\evil.example/", "\\\\evil.example\\x", "#x", "?q=1", "evil.example",
     "http:evil.example", "https:/evil.example", "http:///evil.example", "", "data:text/html,x", "ftp://x.example/"],
)
def test_relative_and_schemeless_hrefs_are_dropped_keeping_the_text(href: str) -> None:
    assert render(f'<a href="{href}" title="t">link <b>text</b></a>') == "<p>link <b>text</b></p>"


@pytest.mark.parametrize(
    "href",
    ["javascript&colon;alert(1)", "javascript&#58alert(1)", "ｊａｖａｓｃｒｉｐｔ:alert(1)", "ｊａｖａｓｃｒｉｐｔ：alert(1)",
     "jav&#x09;ascript:alert(1)", "java\u200bscript:alert(1)", " javascript:alert(1)", "JAVASCRIPT:alert(1)"],
)
def test_script_urls_in_every_disguise_are_dropped(href: str) -> None:
    assert render(f'<a href="{href}">x</a>') == "<p>x</p>"


def test_rel_is_overwritten_not_appended() -> None:
    body_html = render('<a href="https://ann.example" rel="me opener" target="_blank">Ann</a>')
    assert body_html == f'<p><a href="https://ann.example" {REL}>Ann</a></p>'


def test_mailto_links_get_rel_too() -> None:
    body_html = render('<a href="mailto:ann@example.com">mail</a>')
    assert body_html == f'<p><a href="mailto:ann@example.com" {REL}>mail</a></p>'


def test_title_survives_and_other_attributes_do_not() -> None:
    body_html = render('<a href="http://x.example" title="T" class="c" id="i" style="s" onclick="x">x</a>')
    assert body_html == f'<p><a href="http://x.example" title="T" {REL}>x</a></p>'
    assert render('<abbr title="HyperText" lang="en">HTML</abbr>') == '<p><abbr title="HyperText">HTML</abbr></p>'


def test_bare_urls_become_links_with_the_same_policy() -> None:
    assert render("see https://example.com/a?b=1&c=2.") == (
        f'<p>see <a href="https://example.com/a?b=1&amp;c=2" {REL}>https://example.com/a?b=1&amp;c=2</a>.</p>'
    )
    assert render("example.com") == f'<p><a href="http://example.com" {REL}>example.com</a></p>'


def test_ftp_urls_are_not_linked_at_all() -> None:
    # bleach's default pattern links ftp://; with http(s) only it would still link the
    # host part as http://ftp.example.com/..., a link nobody wrote.
    assert render("ftp://ftp.example.com/file.txt") == "<p>ftp://ftp.example.com/file.txt</p>"


def test_mail_addresses_are_not_linked_and_the_hyphen_quirk_is_gone() -> None:
    # bleach with parse_email=False links "-shop.com" in this address (notes, item 12);
    # our URL pattern only starts a link at the start of a word.
    assert render("me@example-shop.com") == "<p>me@example-shop.com</p>"
    assert render("me@example.com") == "<p>me@example.com</p>"
    assert render("(at www.example.com)") == f'<p>(at <a href="http://www.example.com" {REL}>www.example.com</a>)</p>'


def test_scripts_and_raw_text_elements_are_gone() -> None:
    body = (
        "<script>alert(1)</script><style>p{}</style><iframe src=x></iframe><svg><g/></svg>"
        "<math><mi>m</mi></math><noscript>n</noscript><!-- comment -->z"
    )
    assert render(body) == "<p>alert(1)p{}mnz</p>"


def test_stripping_does_not_reassemble_tags() -> None:
    assert render("<scri<script>pt>alert(1)</script>") == "<p>pt&gt;alert(1)</p>"


def test_entities_typed_by_the_author_stay_text() -> None:
    assert render("&amp;lt;script&amp;gt;") == "<p>&amp;lt;script&amp;gt;</p>"
    assert render("x &amp;q; y &amp;amp; z") == "<p>x &amp;q; y &amp;amp; z</p>"
    assert render("&lt;b&gt;") == "<p>&lt;b&gt;</p>"
    assert render("a < b & c > d") == "<p>a &lt; b &amp; c &gt; d</p>"


def test_template_syntax_is_literal() -> None:
    assert render("{{7*7}} ${7*7} #{7*7}") == "<p>{{7*7}} ${7*7} #{7*7}</p>"


def test_malformed_references_are_kept_as_bleach_keeps_them() -> None:
    # Inert but parse errors; "&#xZ;" loses its Z (notes, item 11). Pinned, cosmetic.
    assert render("&#x; &q; &#xZ;") == "<p>&#x; &q; &#x;;</p>"


def test_pre_and_code_are_not_linkified() -> None:
    assert render("<pre>http://example.com</pre>") == "<p></p><pre>http://example.com</pre><p></p>"
    assert render("<code>www.example.com</code> x") == "<p><code>www.example.com</code> x</p>"
    assert render("<pre><code>a</code> example.com</pre>") == "<p></p><pre><code>a</code> example.com</pre><p></p>"


def test_entities_inside_pre_and_code_are_not_escaped_twice() -> None:
    # bleach 6.4.0's LinkifyFilter gives "a &amp;gt; b" here (its skip_tags path).
    assert render("<code>a > b &amp;&amp; c &lt; d</code>") == "<p><code>a &gt; b &amp;&amp; c &lt; d</code></p>"


def test_a_dropped_link_keeps_its_content_and_links_bare_urls_in_it() -> None:
    # bleach replaces a dropped link by its text alone: the <b> and the &lt; were lost,
    # and example.com was left unlinked until a second pass linked it.
    assert render('<a href="/x"><b>b</b> &lt; example.com</a>') == (
        f'<p><b>b</b> &lt; <a href="http://example.com" {REL}>example.com</a></p>'
    )
    assert render('foo.<a href="/x">com</a>') == f'<p><a href="http://foo.com" {REL}>foo.com</a></p>'


def test_attribute_values_holding_a_double_quote_keep_one_level_of_escaping() -> None:
    # bleach would quote these with ' and escape their & again on every pass.
    assert render("<a href='http://x.example/?q=\"a\"&b=1' title='say \"hi\" &amp; go'>x</a>") == (
        f'<p><a href="http://x.example/?q=&quot;a&quot;&amp;b=1" title="say &quot;hi&quot; &amp; go" {REL}>x</a></p>'
    )


def test_no_newline_is_left_right_after_pre() -> None:
    # A parser drops a newline that follows <pre>, so output holding one is not a fixed point.
    body_html = render("<pre><a #x\rselect</pre>")
    assert body_html == "<p></p><pre>select</pre><p></p>"
    assert sanitize(body_html) == body_html


@pytest.mark.parametrize(
    "body", ["<b a<b=1>x</b>", '<b x="1" <y>z</b>', '<abbr <title="x">y</abbr>', "<code><x a<b=1 c>y</code>"]
)
def test_lt_in_an_attribute_name_is_idempotent_here(body: str) -> None:
    # notes/sanitising.md (section 5, item 4) reports one vector of this kind that bleach
    # 6.4.0 escapes again on a second pass. With this module's pipeline none is known:
    # the double escaping we could reproduce came from the linker's pre/code path and
    # from '-quoted attribute values, both fixed in comments/sanitize.py. No xfail, then.
    body_html = render(body)
    assert sanitize(body_html) == body_html
    assert check(body_html) == []


def test_a_link_without_href_is_dropped() -> None:
    assert render("<a>x</a><a name=n>y</a>") == "<p>xy</p>"


def test_cite_must_be_absolute_http() -> None:
    assert render('<blockquote cite="https://src.example/a">q</blockquote>') == (
        '<p></p><blockquote cite="https://src.example/a">q</blockquote><p></p>'
    )
    for cite in ("/a", "//src.example", "mailto:a@b.example", "javascript:x", " http://src.example"):
        assert render(f'<q cite="{cite}">q</q>') == "<p><q>q</q></p>"


def test_attribute_values_cannot_end_the_context() -> None:
    body_html = render('<a href="http://x.example" title="</script><script>alert(1)</script>">x</a>')
    assert "</script>" not in body_html and 'title="&lt;/script>&lt;script>' in body_html


def test_paragraphs_and_line_breaks() -> None:
    assert render("one") == "<p>one</p>"
    assert render("a\nb") == "<p>a<br>\nb</p>"
    assert render("a\n\nb") == "<p>a</p>\n<p>b</p>"
    assert render("  \r\n a  \r\n  b\r\r\n \t \n\nc\rd \n ") == "<p>a<br>\n  b</p>\n<p>c<br>\nd</p>"
    assert render("<b>a\nb</b>\n\n<i>c</i>") == "<p><b>a<br>\nb</b></p>\n<p><i>c</i></p>"


def test_paragraph_markup_typed_by_the_author_is_harmless() -> None:
    assert render("<p>x</p><br/>y") == "<p></p><p>x</p><br>y<p></p>"
    assert render("</p><p onclick=x>y") == "<p></p><p>y</p>"
    assert render("<blockquote>q\n\nr</blockquote>") == (
        "<p></p><blockquote>q<p></p>\n<p>r</p></blockquote><p></p>"
    )
    for body in ("</p></p></p>x", "<p><p><pre>x", "<br><br/></br>"):
        assert check(render(body)) == []


@pytest.mark.parametrize("body", ["", " ", "\n\n", "\r\n\t", "\x00\x01", "\u202e", "\x85"])
def test_empty_bodies_render_to_nothing(body: str) -> None:
    assert render(body) == ""
    assert render_bleach(body) == ""


def test_controls_bidi_and_noncharacters_are_removed() -> None:
    assert render("a\x00b\x01c\x08d\x0be\x0cf\x1bg\x7fh") == "<p>abcdefgh</p>"
    assert render("a\x80b\x85c\x9fd") == "<p>abcd</p>"
    assert render("a\u202ab\u202bc\u202cd\u202de\u202ef\u2066g\u2067h\u2068i\u2069j") == "<p>abcdefghij</p>"
    assert render("a\ufdd0b\ufffec\uffffd\U0001fffee\U0010ffff") == "<p>abcde</p>"
    assert render("a\ud800b") == "<p>ab</p>"
    assert render("tab\there") == "<p>tab\there</p>"
    # Left in: marks that do not override (LRM, RLM, ALM), joiners, NBSP.
    assert render("a\u200eb\u200fc\u061cd\u200de\u00a0f") == "<p>a\u200eb\u200fc\u061cd\u200de\u00a0f</p>"
    assert render('<a href="http://x.example" title="a\x01b\u202ec">\x85x</a>') == (
        f'<p><a href="http://x.example" title="abc" {REL}>x</a></p>'
    )


def test_threads_get_their_own_tools_and_the_same_answers() -> None:
    bodies = VECTORS * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(render_bleach, bodies)) == [render_bleach(body) for body in bodies]


def test_policy_version_is_a_positive_int() -> None:
    assert isinstance(POLICY_VERSION, int) and POLICY_VERSION >= 1


def test_count_links() -> None:
    assert count_links(render("no links, just text")) == 0
    assert count_links(render('<abbr title="a">x</abbr> <a href="/rel">dropped</a>')) == 0
    assert count_links(render('<a href="http://a.example">a</a> and https://b.example.org/x and www.c.com')) == 3
    assert count_links(render("<a href='mailto:a@b.example'>m</a>\n\n<code>www.c.com</code>")) == 1
    assert count_links(render("&lt;a href=x&gt; <a")) == 0


# ---------------------------------------------------------------------------
# Properties.

_PIECES = [
    "<", ">", '"', "'", "=", "/", "!", "-", "&", "#", ";", ":", " ", "\t", "\n", "\n\n", "\r", "`",
    "\x00", "\x01", "\x0c", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\ufffe", "\u200b", "\u2028", "\u3000",
    "\u00a0", "ｊ", "é", "😀", "\u212a", "ſ", "a", "b", "i", "p", "br", "pre", "code", "q", "abbr", "blockquote",
    "cite", "script", "style", "svg", "math", "noscript", "iframe", "textarea", "title", "xmp", "img", "mglyph",
    "template", "select", "table", "form", "href", "rel", "onerror", "xmlns", "javascript", "http://",
    "https://", "mailto:", "example.com", "www.", ".com", "@", "&#", "x", "0", "3a", "colon", "lt", "gt", "amp",
    "&#x6a;", "<!--", "-->", "<![CDATA[", "]]>", "</", "<a href=", "<b>", "</b>",
]
_hostile_text = st.lists(st.sampled_from(_PIECES) | st.characters(), max_size=60).map("".join)
_PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(_hostile_text)
def test_property_output_passes_the_checker_quickly(body: str) -> None:
    started = time.perf_counter()
    body_html = render(body)
    assert time.perf_counter() - started < 1
    assert check(body_html) == []


@_PROPERTY_SETTINGS
@given(_hostile_text)
def test_property_sanitizing_the_output_again_changes_nothing(body: str) -> None:
    body_html = render(body)
    assert sanitize(body_html) == body_html


@_PROPERTY_SETTINGS
@given(_hostile_text)
def test_property_fast_path_agrees_with_bleach(body: str) -> None:
    fast = render_fast(body)
    assert fast is None or fast == render_bleach(body)


# ---------------------------------------------------------------------------
# A second opinion: the same fragments through nh3 (ammonia) must pass the same checker.
#
# nh3 needs more than the allowlist to get there. Without "*": set() it keeps its
# generic attributes (lang, title) on every tag. Without clean_content_tags for the
# elements that bound a scope, `<p><object></p>` comes out as `<p><p></p></p>`: it
# strips <object> but keeps the <p> the parser made inside it, and that markup does
# not parse back to the same tree (the <select> case nests <a> in <a> the same way).
# And it resolves references, so `&#3;` comes out as a raw U+0003: the checker's
# character hygiene is not asked of it.

_NH3_DROP_WITH_CONTENT = {
    "script", "style", "template", "object", "applet", "marquee", "button", "select", "table", "svg", "math",
}


def _nh3_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "href" and not _STRICT_HREF.match(value):
        return None
    if name == "cite" and not _STRICT_CITE.match(value):
        return None
    return value


@cache
def _nh3_cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=set(ALLOWED),
        clean_content_tags=_NH3_DROP_WITH_CONTENT,
        attributes={"*": set(), "a": {"href", "title"}, "abbr": {"title"}, "blockquote": {"cite"}, "q": {"cite"}},
        attribute_filter=_nh3_attribute,
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="nofollow ugc noopener",
        strip_comments=True,
    )


def _nh3_render(body: str) -> str:
    fragment = "\n".join("<p>" + "<br>\n".join(lines) + "</p>" for lines in paragraphs(body))
    return _nh3_cleaner().clean(fragment)


@pytest.mark.parametrize("vector", VECTORS)
def test_nh3_second_opinion_on_the_corpus(vector: str) -> None:
    body_html = _nh3_render(vector)
    assert check(body_html, require_href=False, hygiene=False) == []
    assert _nh3_cleaner().clean(body_html) == body_html


@_PROPERTY_SETTINGS
@given(_hostile_text)
def test_nh3_second_opinion_property(body: str) -> None:
    assert check(_nh3_render(body), require_href=False, hygiene=False) == []


def test_nh3_needs_the_extra_settings() -> None:
    # Pins the reasons given above, so that the day nh3 changes them shows up here.
    plain = nh3.Cleaner(tags=set(ALLOWED), attributes={"a": {"href"}}, url_relative="deny")
    assert plain.clean('<b title="t" lang="en">x</b>') == '<b title="t" lang="en">x</b>'
    assert plain.clean("<p><object></p>") == "<p><p></p></p>"
    assert "<p> inside <p>" in check(plain.clean("<p><object></p>"), require_href=False)
    assert _nh3_cleaner().clean("<p><object></p>") == "<p></p>"
    assert _nh3_render("&#3;") == "<p>\x03</p>"


# ---------------------------------------------------------------------------
# The fast path gives bleach's bytes.

_WORDS = (
    "the a comment I think this is great but no yes really why because article author thanks "
    "naïve Straße café 日本語 العربية עברית Ελληνικά русский हिन्दी 한국어 ✓ № € £ ½ ²"
).split()
_PUNCTUATION = [
    ".", ",", ";", ":", "!", "?", "...", "…", "-", "--", "—", "(", ")", "[", "]", "{", "}", "/", "\\", "*",
    "_", "~", "^", "`", "|", "+", "=", "%", "$", "#", "@", "'", '"', "’", "“", "”", "«", "»", ">", "->",
    ":)", ";-)", "3.14", "v1.2.3", "10:30", "1.000,5", ".5", "..", "!.", ".)", "._", ".-", ". ", "://",
]
_SPACES = [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\n \n", "\u00a0", "\u3000", "\u2028"]
_ODD = [
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "\u200b", "\u200d", "\ufe0f", "e\u0301", "\ufeff", "\u202e",
    "\x85", "\ufffe", "\x01", "\x00", "\ud83d", "\U0001f600", "\u212a", "ſ", "ı", "İ",
]
# Rare on purpose: each one sends the text through bleach.
_MARKUP = ["<", "&", "<b>", "&amp;", "example.com", "www.x.org", "e.g.", "a.b", "Hi.co", ".\u212aE", ".é"]


def _generated_texts(count: int, seed: int = 20261129) -> list[str]:
    rnd = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rnd.randint(1, 30)):
            roll = rnd.random()
            if roll < 0.45:
                parts.append(rnd.choice(_WORDS))
            elif roll < 0.7:
                parts.append(rnd.choice(_PUNCTUATION))
            elif roll < 0.88:
                parts.append(rnd.choice(_SPACES))
            elif roll < 0.94:
                parts.append(rnd.choice(_ODD))
            elif roll < 0.98:
                parts.append(chr(rnd.randrange(0x20, 0x30000)))
            else:
                parts.append(rnd.choice(_MARKUP))
        texts.append("".join(parts))
    return texts


def _taken_and_agreeing(texts: list[str], fast_path: Callable[[str], str | None]) -> int:
    """How many texts the fast path renders; each must be bleach's bytes exactly."""
    taken = 0
    for text in texts:
        fast = fast_path(text)
        if fast is not None:
            taken += 1
            assert fast == render_bleach(text), text
    return taken


def test_fast_path_is_byte_identical_to_bleach_on_generated_text() -> None:
    texts = _generated_texts(24_000)
    fast_count = _taken_and_agreeing(texts, render_fast)
    assert fast_count >= 12_000  # the corpus mostly exercises the fast path
    assert len(texts) - fast_count >= 2_000  # and the eligibility rule says no often enough


@pytest.mark.parametrize(
    "line, eligible",
    [
        ("plain words, punctuation! and 3.14 or v1.2.3 :-> ok", True),
        ("ends with a dot. Then a capital", True),
        ("scheme without a domain: http://localhost/x", True),
        ("me@localhost", True),
        ("a < b", False),
        ("fish & chips", False),
        ("example.com", False),
        ("e.g. this", False),
        ("x.\u212aE", False),  # the Kelvin sign matches "k" ignoring case: x.KE is linked
        ("x.é", False),
        ("bell\x07", False),
    ],
)
def test_fast_path_eligibility(line: str, eligible: bool) -> None:
    assert fast_path_eligible(line) is eligible


def test_the_kelvin_sign_really_is_linked_by_bleach() -> None:
    assert render_bleach("x.\u212aE") == f'<p><a href="http://x.\u212aE" {REL}>x.\u212aE</a></p>'


def test_fast_path_is_taken_for_plain_text() -> None:
    assert render_fast("Nice post!\nThanks -> more > less") == "<p>Nice post!<br>\nThanks -&gt; more &gt; less</p>"
    assert render_fast("Nice <b>post</b>") is None


# ---------------------------------------------------------------------------
# The inline fast path (simple inline markup, plain links, a few entities) gives bleach's bytes.

_INLINE_OK = ["a", "abbr", "b", "cite", "code", "del", "em", "i", "q", "s", "strong"]
_INLINE_OTHER = ["strike", "u", "span", "pre", "p", "blockquote", "br", "img"]
_INLINE_TEXT = [
    "word", "Спасибо", "ありがとう", "café", " ", " ", "  ", "\t", ",", "!", "?", "...", "…", "'", '"', ">", "->",
    ":)", "3.14", "v1.2", ". ", "end.", "(x)", "a-b", "@", "#", "%", "/", ";", ":", "\u00a0", "=", "=", "x=", "=y",
]
_INLINE_RISKY = [
    "example.com", "e.g.", "x.\u212aE", "a.é", "www.x.org", "http://x.example/", "&", "<", "<3", "&amp", "&#;",
    "&#x41;", "&nbsp", "&foo;", "&notit;", "\x01", "\u202e", "\r", "\n\n", "<!-- c -->", "</>",
]
_INLINE_ENTITIES = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&nbsp;", "&hellip;", "&mdash;", "&ndash;", "&lsquo;", "&rsquo;", "&ldquo;",
    "&rdquo;", "&#39;", "&#8230;", "&#8217;", "&#1234567;", "& ", "&\t",
]
_INLINE_HREFS = [
    "https://source.example/report", "http://x.example", "http://a.b/c?d=e;f#g", "https://x.example/~u/(1)*+,!$%20@:",
    "http://localhost", "https://1.2.3.4:8080/p",
]
_INLINE_BAD_HREFS = [
    "ftp://x.y", "/rel", "http://x.y/&amp;", "HTTP://X.Y", "http://é.example", "http://[::1]/", "javascript:alert(1)",
    'http://x.y/"', "http://x.y' onclick='", "mailto:a@b.example",
]


def _inline_piece(rnd: random.Random, depth: int, bad: bool) -> str:
    roll = rnd.random()
    if roll < 0.55:
        return rnd.choice(_INLINE_TEXT)
    if roll < 0.65:
        return rnd.choice(_INLINE_ENTITIES)
    if roll < 0.67 or (bad and roll < 0.72):
        return rnd.choice(_INLINE_RISKY)
    if roll < 0.80 and depth < 4:
        tag = rnd.choice(_INLINE_OK + (_INLINE_OTHER if bad else []))
        inner = "".join(_inline_piece(rnd, depth + 1, bad) for _ in range(rnd.randint(0, 4)))
        if tag == "a":
            href = rnd.choice(_INLINE_BAD_HREFS if bad and rnd.random() < 0.3 else _INLINE_HREFS)
            start = f'<a href="{href}">'
            if rnd.random() < 0.05:
                start = rnd.choice(["<a>", f"<a href='{href}'>", f'<a  href="{href}">', f'<a href="{href}" title="t">'])
            if rnd.random() < 0.3:
                inner += rnd.choice(["example.com", "x.org", "a.b"])  # not linked inside a link
            return start + inner + "</a>"
        start, end = f"<{tag}>", f"</{tag}>"
        if bad and rnd.random() < 0.2:
            start = rnd.choice([f"<{tag.upper()}>", f"<{tag} >", f"<{tag}/>", f"<{tag} x=1>"])
        if bad and rnd.random() < 0.1:
            end = rnd.choice(["", f"</{tag} >", "</b>", f"</{tag.upper()}>"])
        return start + inner + end
    return "\n" if roll < 0.9 else rnd.choice(_INLINE_TEXT)


def _generated_markup(count: int, seed: int = 20261130) -> list[str]:
    """Texts with inline markup, mostly of the kind the inline path takes, the rest near misses."""
    rnd = random.Random(seed)
    texts = []
    for _ in range(count):
        bad = rnd.random() < 0.3
        texts.append("".join(_inline_piece(rnd, 0, bad) for _ in range(rnd.randint(1, 15))))
    return texts


def test_inline_fast_path_is_byte_identical_to_bleach_on_generated_markup() -> None:
    # 640,000 such texts (32 seeds) agreed when the path was written; this keeps a sample.
    texts = _generated_markup(10_000)
    taken = _taken_and_agreeing(texts, render_fast_markup)
    assert taken >= 4_000  # the generator mostly exercises the inline path
    assert len(texts) - taken >= 3_000  # and its rules say no often enough


_inline_text = st.lists(
    st.sampled_from(_INLINE_TEXT + _INLINE_RISKY + _INLINE_ENTITIES + [f"<{t}>" for t in _INLINE_OK + _INLINE_OTHER]
                    + [f"</{t}>" for t in _INLINE_OK + _INLINE_OTHER] + [f'<a href="{h}">' for h in _INLINE_HREFS]),
    max_size=40,
).map("".join)


@_PROPERTY_SETTINGS
@given(_inline_text)
def test_property_inline_fast_path_agrees_with_bleach(body: str) -> None:
    fast = render_fast_markup(body)
    assert fast is None or fast == render_bleach(body)


@_PROPERTY_SETTINGS
@given(_hostile_text)
def test_property_inline_fast_path_agrees_with_bleach_on_hostile_text(body: str) -> None:
    fast = render_fast_markup(body)
    assert fast is None or fast == render_bleach(body)


@pytest.mark.parametrize(
    "body, expected",
    [
        ('see <a href="https://x.example/r">the report</a>, <em>table 3</em> &amp; notes &#8230;',
         f'<p>see <a href="https://x.example/r" {REL}>the report</a>, <em>table 3</em> &amp; notes &#8230;</p>'),
        ("fish & chips -> <b>yes</b>\n\n<code>a.b()</code>", "<p>fish &amp; chips -&gt; <b>yes</b></p>\n<p><code>a.b()</code></p>"),
        ('<a href="http://x.example">x.example</a>', f'<p><a href="http://x.example" {REL}>x.example</a></p>'),
        ("<q>quote</q> <abbr>AB</abbr> <del>old</del> <s>gone</s> <cite>Book</cite> <i>it</i> <strong>bold</strong>",
         "<p><q>quote</q> <abbr>AB</abbr> <del>old</del> <s>gone</s> <cite>Book</cite> <i>it</i> "
         "<strong>bold</strong></p>"),
    ],
)
def test_inline_fast_path_is_taken(body: str, expected: str) -> None:
    assert render_fast_markup(body) == expected == render_bleach(body)


@pytest.mark.parametrize(
    "body",
    [
        "<b>a\nb</b>",  # tags balanced only across lines
        "<b><b>x</b></b>",  # an element inside one of its name
        '<a href="http://x.example"><a href="http://y.example">y</a></a>',
        "<a>x</a>",  # a link without an address: dropped, its text joins its neighbours
        "<b>x</b>=&ndash;",  # bleach's serializer escapes this entity: &amp;ndash;
        "<strike>x</strike>",  # allowed by the cleaner, escaped by the linker: &lt;strike&gt;
        "see example.com",  # linked
        "a &notit; b",  # not an entity bleach knows
        '<a href="http://x.y" title="t">x</a>',
    ],
)
def test_inline_fast_path_leaves_these_to_bleach(body: str) -> None:
    assert render_fast_markup(body) is None
    assert render(body) == render_bleach(body)


def test_the_quirks_the_inline_path_steps_around_are_real() -> None:
    # Pins what bleach does today, so that a bleach that changes them shows up here.
    assert render_bleach("<b>x</b>=&ndash;") == "<p><b>x</b>=&amp;ndash;</p>"
    assert render_bleach("<strike>x</strike>") == "<p>&lt;strike&gt;x&lt;/strike&gt;</p>"


# ---------------------------------------------------------------------------
# Bounded cost: a safety check with generous bounds, not a benchmark.


@pytest.mark.parametrize(
    "body",
    [
        "<b>" * 2_500,
        "<b>x</b>" * 1_250,
        " ".join(["http://a.example.com/" + "x" * 30] * 200)[:10_000],
        "www." + "a." * 4_996 + "com",
        "a.b" * 3_333,
        "(" * 5_000 + "example.com" + ")" * 4_980,
    ],
    ids=["open-b", "closed-b", "urls", "long-domain", "dots", "parens"],
)
def test_ten_thousand_characters_render_in_under_a_second(body: str) -> None:
    assert len(body) <= 10_000
    started = time.perf_counter()
    body_html = render(body)
    assert time.perf_counter() - started < 1
    assert check(body_html) == []
