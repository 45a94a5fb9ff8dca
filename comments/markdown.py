"""Markdown to HTML for comments imported from Isso, which stores what readers typed as Markdown.

The project's one user of markdown-it-py. Its output is not trusted: the importer passes it
through the same sanitiser as every new comment (`sanitize.render`), which keeps only the
allowlisted tags and makes every link safe.

Only paragraphs and inline Markdown are read (emphasis, strong, code spans, links,
strikethrough as Isso has it, and raw inline HTML, which Isso let readers write and the
sanitiser judges). Block syntax (quotes, lists, headings, rules, code blocks) stays the text
the reader typed, because our comments have no such blocks: a "> quote" or "- item" line
reads as it did in the form. Single line breaks are kept: the sanitiser's paragraph step
turns them into `<br>`, as for a comment typed into our own form.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_BLOCKS = ["blockquote", "list", "heading", "lheading", "hr", "code", "fence", "html_block", "reference"]
_RENDERER = MarkdownIt("commonmark", {"html": True, "breaks": False}).disable(_BLOCKS).enable("strikethrough")


def to_html(text: str) -> str:
    """The HTML that a Markdown text stands for (unsanitised)."""
    return _RENDERER.render(text)
