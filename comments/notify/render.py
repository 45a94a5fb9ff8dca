"""Mail and page text from Jinja2 templates: built-in ones, each replaceable from a site's own folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

HERE = Path(__file__).parent / "templates"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _plain(value: Any) -> Any:
    """Every value in a plain-text template: control characters (not line breaks or tabs) removed."""
    return _CONTROL.sub("", value) if isinstance(value, str) else value


class Templates:
    """The templates for mail (NAME.subject, NAME.txt, NAME.html) and for the pages behind its links."""

    def __init__(self, folder: str | None = None) -> None:
        loader = jinja2.ChoiceLoader(
            ([jinja2.FileSystemLoader(folder)] if folder else []) + [jinja2.FileSystemLoader(HERE)]
        )
        options: dict[str, Any] = {"loader": loader, "undefined": jinja2.StrictUndefined, "trim_blocks": True,
                                   "lstrip_blocks": True, "keep_trailing_newline": False}
        self.html = jinja2.Environment(autoescape=True, **options)
        self.text = jinja2.Environment(autoescape=False, finalize=_plain, **options)

    def mail(self, name: str, context: dict[str, Any]) -> tuple[str, str, str | None]:
        """(subject on one line, plain text, HTML or None when there is no NAME.html)."""
        subject = " ".join(self.text.get_template(f"{name}.subject").render(context).split())
        text = self.text.get_template(f"{name}.txt").render(context).strip() + "\n"
        try:
            template = self.html.get_template(f"{name}.html")
        except jinja2.TemplateNotFound:
            return subject, text, None
        return subject, text, template.render(context)

    def page(self, context: dict[str, Any]) -> str:
        return self.html.get_template("page.html").render(context)


def trusted_html(value: str) -> Markup:
    """HTML the sanitiser made (a comment's body_html): inserted as it is, everything else escaped."""
    return Markup(value)
