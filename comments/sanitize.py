"""Comment text to safe HTML: the project's one and only user of bleach."""

# The policy (API.md, "Sanitising"; notes/sanitising.md, section 3), in order: remove
# unwanted characters; make the paragraphs (<p>, <br>) before any sanitizing; clean with
# bleach's Cleaner to the allowlist; then, in a second pass, let a Linker turn bare http(s)
# URLs into links and apply one link policy to every <a>: absolute http, https or mailto
# only, rel="nofollow ugc noopener" written over whatever was there. Nothing touches the
# markup after that second pass.
#
# Departures from the notes' section 3, each pinned by a test in tests/test_sanitize.py:
# - bleach's LinkifyFilter writes the text inside skip_tags (pre, code) without re-marking
#   its entities, so <code>a &lt; b</code> became "a &amp;lt; b", and it replaces a dropped
#   link by its bare text, unlinked and stripped of markup and entities, which a second pass
#   then linked. _LinkFilter fixes both.
# - bleach's serializer re-marks entities only in "-quoted attribute values but quotes a
#   value holding a " with ', so title='say "hi" & go' came out with &amp;amp; (one more
#   level on every pass). Values are always "-quoted here.
# - Bare URLs are linked only where a word starts, never after / : - @ . or a letter, so
#   "ftp://host/x" and "me@example-shop.com" no longer give links to http hosts nobody wrote.
# - C0 controls are removed like C1 ones, rather than bleach's "?" in text (and raw C0 in
#   attribute values).
#
# Fast path. Most comments are plain text: render() gives those the same bytes as the bleach
# path without running html5lib (fast_path_eligible says when; the tests compare both paths
# on 24,000 generated texts). Measured with timeit.repeat(number=2000 for the fast path, 200
# for bleach, repeat=5), best run divided by number, Python 3.11.7, bleach 6.4.0, on the
# shared 2-core dev machine (load average about 4), plain English with line breaks and a
# paragraph break:
#
#     body       fast path   bleach path (render_bleach)
#     200 B        3.6 us       0.17 ms
#     2,000 B     26 us         0.80 ms
#
# Inline fast path. Many of the rest hold only simple inline markup: <em>, <b> and the like
# without attributes, <a href="http://..."> with a plain address, a few entities, a bare "&"
# before a space. render_fast_markup writes those itself, line by line, when every line's
# tags are balanced (see _inline_line for why the output is then bleach's, byte for byte;
# the tests compare both paths on generated markup). About 30 us for a 1,000-character body
# instead of about 1 ms through bleach.

import re
import threading
from collections.abc import Iterator

from bleach.linkifier import LinkifyFilter, Linker, build_url_re
from bleach.sanitizer import Cleaner

#: Bump whenever the output for some input changes; stored with each body_html.
POLICY_VERSION = 1

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "cite", "code", "del", "em", "i", "q",
    "s", "strike", "strong", "pre",
    "p", "br",  # written by our own paragraph step, before cleaning
})
ATTRIBUTES = {
    "a": frozenset({"href", "title"}),
    "abbr": frozenset({"title"}),
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
}
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
REL = "nofollow ugc noopener"

# Absolute only: bleach alone lets relative, scheme-less and `javascript&colon;` values through.
_ABSOLUTE_HREF = re.compile(r"^(?:https?://[^\s/\\?#]|mailto:\S)", re.IGNORECASE)
_ABSOLUTE_CITE = re.compile(r"^https?://[^\s/\\?#]", re.IGNORECASE)

# Removed before rendering: C0 controls but tab and line ends, DEL and C1 controls,
# bidi embeddings, overrides and isolates, lone surrogates and the 66 noncharacters.
# Written as the complement (what is kept), which the regex engine scans 10 times faster.
_KEPT = "\t\n\r\x20-\x7e\xa0-\u2029\u202f-\u2065\u206a-\ud7ff\ue000-\ufdcf\ufdf0-\ufffd" + "".join(
    f"{chr(plane)}-{chr(plane + 0xFFFD)}" for plane in range(0x10000, 0x110000, 0x10000)
)
_UNWANTED = re.compile(f"[^{_KEPT}]")
_BLANK_LINES = re.compile(r"\n[^\S\n]*(?:\n[^\S\n]*)+")

# Anything that could make the cleaner or the linker do more than escape `>`: a character
# of the first pattern, or a match of the second. Two searches: one pattern holding both
# alternatives scans three times slower (it has no literal or set to skip ahead with).
_NEEDS_BLEACH_CHARS = re.compile(r"[<&\x00-\x08\x0b-\x1f\x7f-\x9f]")
_DOT_LETTER = re.compile(r"\.(?:[A-Za-z]|[^\x00-\x7f])")

# bleach's URL pattern for http(s), linked only where a word starts.
_URL = re.compile(
    r"(?<![\w@./:-])" + build_url_re(protocols=["http", "https"]).pattern,
    re.IGNORECASE | re.VERBOSE | re.UNICODE,
)
_LINK_START = re.compile(r"<a[\s/>]", re.IGNORECASE)

# What the inline fast path writes itself. Tags: lower case, exactly as here, no attributes
# (an <a> only with one href, "-quoted, http(s), ASCII, no character html5lib or the
# serializer would touch). Entities: these names, or a decimal number. A bare "&" only
# before a space, a tab or the end of the line. Any other "<" or "&" is left to bleach.
_INLINE_TAGS = frozenset({"a", "abbr", "b", "cite", "code", "del", "em", "i", "q", "s", "strong"})
_NOT_LINKED_IN = frozenset({"a", "code"})  # the linker never looks for bare URLs inside these
_MARKUP_START = re.compile(r"[<&]")
_INLINE_TOKEN = re.compile(
    r"<(/?)([a-z]+)>"
    r'|<a href="(https?://[A-Za-z0-9][-A-Za-z0-9._~:/?#@!$()*+,;=%]*)">'
    r"|(&(?:amp|lt|gt|quot|nbsp|hellip|mdash|ndash|lsquo|rsquo|ldquo|rdquo|#[1-9][0-9]{0,6});)"
    r"|(&)(?=[ \t]|$)"
)

_local = threading.local()  # a Cleaner and a Linker hold parser state: one pair per thread


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name not in ATTRIBUTES.get(tag, ()):
        return False
    return name != "cite" or bool(_ABSOLUTE_CITE.match(value))


def _link_policy(attrs: dict, new: bool = False) -> dict | None:
    # Runs on the links the author wrote and on the ones made from bare URLs.
    href = attrs.get((None, "href"))
    if href is None or not _ABSOLUTE_HREF.match(href):
        return None  # drop the <a>, keep its content
    kept = {key: value for key, value in attrs.items() if key in {(None, "href"), (None, "title"), "_text"}}
    kept[(None, "rel")] = REL  # overwritten, never appended to
    return kept


class _LinkFilter(LinkifyFilter):
    """bleach's LinkifyFilter with a token loop that keeps text as text.

    Text inside pre and code is re-marked for entities like all other text,
    and a dropped link is unwrapped: its content stays, and its text joins the
    neighbouring text before bare URLs are looked for, as a second pass would.
    When that brings newlines right after `<pre>` they are dropped, as a second
    pass would drop them (html5lib's serializer does not double them).
    """

    def __iter__(self) -> Iterator[dict]:
        skipping = 0  # depth of open skip_tags elements
        pre_opened = False  # the last token out was <pre>
        in_link: bool | None = None  # inside a kept <a>: True, a dropped one: False
        pending: list[str] = []  # text to link when the next tag comes
        for token in self.source:
            kind, name = token["type"], token.get("name")
            if kind in ("Characters", "SpaceCharacters"):
                if in_link or skipping:
                    data = token["data"]
                    if pre_opened:
                        data = data.lstrip("\n")  # a parser would drop it: the output must not hold it
                        if not data:
                            continue
                    pre_opened = False
                    yield from self.extract_entities({"type": "Characters", "data": data})
                else:
                    pending.append(token["data"])
                continue
            if name == "a" and kind == "StartTag":
                attrs = self.apply_callbacks(dict(token["data"] or {}), False)
                in_link = attrs is not None
                if attrs is None:
                    continue
                token["data"] = attrs
            elif name == "a" and kind == "EndTag":
                in_link, kept = None, in_link
                if not kept:
                    continue
            if pending:
                yield from self._linked("".join(pending))
                pending = []
            if name in self.skip_tags and kind == "StartTag":
                skipping += 1
            elif name in self.skip_tags and kind == "EndTag":
                skipping = max(0, skipping - 1)
            pre_opened = name == "pre" and kind == "StartTag"
            yield token
        if pending:
            yield from self._linked("".join(pending))

    def _linked(self, text: str) -> Iterator[dict]:
        for token in self.handle_links(iter([{"type": "Characters", "data": text}])):
            yield from self.extract_entities(token)


class _Linker(Linker):
    """A Linker that runs _LinkFilter."""

    def linkify(self, text: str) -> str:
        if not text:
            return ""
        source = self.walker(self.parser.parseFragment(text))
        links = _LinkFilter(source=source, callbacks=self.callbacks, skip_tags=self.skip_tags, url_re=self.url_re)
        return self.serializer.render(links)


def _tools() -> tuple[Cleaner, Linker]:
    tools = getattr(_local, "tools", None)
    if tools is None:
        cleaner = Cleaner(
            tags=TAGS, attributes=_allowed_attribute, protocols=LINK_SCHEMES, strip=True, strip_comments=True
        )
        linker = _Linker(callbacks=[_link_policy], url_re=_URL, skip_tags={"pre", "code"}, parse_email=False)
        for tool in (cleaner, linker):
            # bleach re-marks entities only in "-quoted values; a value with a " in it
            # was '-quoted and got its & escaped once more on every pass.
            tool.serializer.use_best_quote_char = False
        tools = _local.tools = (cleaner, linker)
    return tools


def _clean_text(body: str) -> str:
    return _UNWANTED.sub("", body.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _blocks(text: str) -> list[list[str]]:
    if not text:
        return []
    return [[line.rstrip() for line in block.split("\n")] for block in _BLANK_LINES.split(text)]


def paragraphs(body: str) -> list[list[str]]:
    """Split a body into paragraphs of lines, after removing unwanted characters.

    Line ends are normalised to LF; C0 controls other than tab and LF, DEL, C1
    controls, bidi embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069), lone surrogates and noncharacters are removed; the text is
    trimmed and split on blank lines, and each line loses its trailing white space.
    """
    return _blocks(_clean_text(body))


def sanitize(fragment: str) -> str:
    """Clean an HTML fragment to the allowlist, then turn bare URLs into links.

    Two passes on purpose: bleach's one-pass LinkifyFilter decodes one level of
    entities. Running this on its own output gives the same output.
    """
    cleaner, linker = _tools()
    return linker.linkify(cleaner.clean(fragment))


def fast_path_eligible(text: str) -> bool:
    """Tell whether bleach would give back this text as is, but for escaping `>`.

    True when the text has no `<`, no `&`, no control character but tab and
    LF, and no `.` followed by an ASCII letter or a non-ASCII character.
    Without `<` and `&` the tokenizer sees only text, which the cleaner passes
    through. Every match of bleach's URL pattern has a `.` followed by the
    first letter of a top-level domain, matched ignoring case (which also lets
    a few non-ASCII letters, such as the Kelvin sign, stand for ASCII ones), so
    the linker finds nothing.
    """
    return _NEEDS_BLEACH_CHARS.search(text) is None and _DOT_LETTER.search(text) is None


def _markup(blocks: list[list[str]]) -> str:
    return "\n".join("<p>" + "<br>\n".join(lines) + "</p>" for lines in blocks)


def _fast(text: str) -> str | None:
    return _markup(_blocks(text.replace(">", "&gt;"))) if fast_path_eligible(text) else None


def render_fast(body: str) -> str | None:
    """Render a plain-text body without html5lib, or return None if it needs bleach."""
    return _fast(_clean_text(body))


def _inline_line(line: str) -> str | None:
    """One line of a paragraph as bleach writes it, or None when the line needs bleach.

    Why the bytes are bleach's: with the tags of each line balanced and properly nested
    (never one inside another of its name, so never <a> in <a>), html5lib builds exactly
    the tags written: no element is closed, reopened or moved, and nothing is left open
    for the next line. All of them are allowed, so the cleaner keeps them; the only
    attribute, href, passes its scheme check and the link policy, which adds rel after
    it. Entities pass both passes as written (a bare "&" before white space becomes
    &amp;), text passes but for ">" escaped, and the linker finds no bare URL for the
    reason fast_path_eligible gives, checked on each run of text it would search
    (text inside <a> and <code> it does not search).
    """
    out: list[str] = []
    open_tags: list[str] = []
    at = 0
    while (found := _MARKUP_START.search(line, at)) is not None:
        token = _INLINE_TOKEN.match(line, found.start())
        if token is None or not _inline_text(line[at:token.start()], open_tags, out):
            return None
        at = token.end()
        close, name, href, entity, ampersand = token.groups()
        if name is not None:
            if close:
                if not open_tags or open_tags[-1] != name:
                    return None
                open_tags.pop()
            elif name == "a" or name not in _INLINE_TAGS or name in open_tags:
                return None
            else:
                open_tags.append(name)
            out.append(token.group())
        elif href is not None:
            if "a" in open_tags:
                return None
            open_tags.append("a")
            out.append(f'<a href="{href}" rel="{REL}">')
        elif entity is not None:
            out.append(entity)
        else:
            assert ampersand is not None
            out.append("&amp;")
    if not _inline_text(line[at:], open_tags, out) or open_tags:
        return None
    return "".join(out)


def _inline_text(text: str, open_tags: list[str], out: list[str]) -> bool:
    """Add a run of text between tokens to out; False if bleach could write it otherwise."""
    if not text:
        return True
    if "=" in text and any(piece.strip() == "=" for piece in text.split(">")):
        # bleach's serializer can take a text token of just "=" after an end tag for an
        # attribute's, and escape the entity after it. Tokens end at tags and entities
        # (">" is one, &gt;, in the second pass), white space at a tag is one of its own.
        return False
    if not fast_path_eligible(text) and not _NOT_LINKED_IN.intersection(open_tags):
        return False
    out.append(text.replace(">", "&gt;"))
    return True


def _fast_markup(text: str) -> str | None:
    blocks = []
    for block in _blocks(text):
        lines = []
        for line in block:
            done = _inline_line(line)
            if done is None:
                return None
            lines.append(done)
        blocks.append(lines)
    return _markup(blocks)


def render_fast_markup(body: str) -> str | None:
    """Render a body whose only markup is simple inline tags, plain links and a few entities
    without html5lib (the same bytes as render_bleach), or return None if it needs bleach."""
    return _fast_markup(_clean_text(body))


def render_bleach(body: str) -> str:
    """Render a body through the paragraph step and the full bleach sanitizer."""
    blocks = paragraphs(body)
    return sanitize(_markup(blocks)) if blocks else ""


def render(body: str) -> str:
    """Render a body as its author wrote it to body_html.

    Blank lines separate paragraphs (`<p>`) and other line breaks become
    `<br>`; then only the allowlisted tags and attributes survive (others are
    removed, their text kept), links must be absolute http, https or mailto and
    all get rel="nofollow ugc noopener", and bare http(s) URLs become links.
    C0 and C1 controls, bidi overrides (U+202A-U+202E, U+2066-U+2069), lone
    surrogates and noncharacters are removed from the text first. The empty
    body renders to "". Plain text, and text with only simple inline markup, take
    fast paths with the same output.
    """
    text = _clean_text(body)
    fast = _fast(text)
    if fast is None:
        fast = _fast_markup(text)
    return fast if fast is not None else sanitize(_markup(_blocks(text)))


def count_links(body_html: str) -> int:
    """Count the `<a>` elements in HTML made by render (bare URLs became links too)."""
    return len(_LINK_START.findall(body_html))
