"""Field rules for new comments, ids and limits (pure)."""

import pytest

from comments.errors import ApiError
from comments.forms import comment_in, normalise_url, parse_id, query_limit, rules_in


def fields(**over: object) -> dict[str, object]:
    data: dict[str, object] = {"page": "/p/1", "body": "Hi", "author": "Ann", "email": "ann@example.org"}
    data.update(over)
    return data


def test_fields_are_trimmed_and_email_normalised() -> None:
    got = comment_in(fields(page=" /p/1 ", body="  Hi \n", author=" Ann ", email=" Ann@EXAMPLE.org "), 100)
    assert (got.page, got.body, got.author, got.email) == ("/p/1", "Hi", "Ann", "Ann@example.org")


def test_every_failing_field_is_named() -> None:
    with pytest.raises(ApiError) as caught:
        comment_in({"url": "javascript:alert(1)", "parent": "x"}, 100)
    assert caught.value.status == 422
    assert set(caught.value.fields) == {"page", "body", "author", "email", "url", "parent"}


@pytest.mark.parametrize("value", [1, 1.5, ["a"], {"a": 1}, True])
def test_wrong_types(value: object) -> None:
    with pytest.raises(ApiError) as caught:
        comment_in(fields(author=value), 100)
    assert caught.value.fields == {"author": "must be a string"}


def test_limits() -> None:
    comment_in(fields(body="x" * 100, author="a" * 245, page="p" * 1024), 100)
    for name, value in {"body": "x" * 101, "author": "a" * 246, "page": "p" * 1025,
                        "email": "a" * 250 + "@b.cd"}.items():
        with pytest.raises(ApiError) as caught:
            comment_in(fields(**{name: value}), 100)
        assert name in caught.value.fields


@pytest.mark.parametrize("bad", ["a\x00b", "a\x07b"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(ApiError):
        comment_in(fields(body=bad), 100)
    with pytest.raises(ApiError):
        comment_in(fields(author=bad), 100)


def test_body_keeps_newlines_and_tabs_author_does_not() -> None:
    assert comment_in(fields(body="a\n\tb"), 100).body == "a\n\tb"
    with pytest.raises(ApiError):
        comment_in(fields(author="a\nb"), 100)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("bob.example", "https://bob.example"), ("http://bob.example/x", "http://bob.example/x"),
     ("HTTPS://Bob.example", "HTTPS://Bob.example"), ("bob.example:8080/a", "https://bob.example:8080/a")],
)
def test_urls(given: str, stored: str) -> None:
    assert normalise_url(given) == stored


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "ftp://x.example", "mailto:a@b.c", "http://", "a b.example",
                                 "data:text/html,x", "https://x.example:99999/", "https://" + "a" * 200 + ".example"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_url(bad)


def test_parent_zero_or_empty_means_none() -> None:
    for value in (0, "0", "", None):
        assert comment_in(fields(parent=value), 100).parent is None
    assert comment_in(fields(parent="12"), 100).parent == 12


@pytest.mark.parametrize("value", ["１", "1_0", "-1", "1.0", str(2**63), 2**63, True, "0x10", " "])
def test_ids_are_ascii_digits_in_range(value: object) -> None:
    assert parse_id(value) is None


def test_query_limit() -> None:
    assert query_limit(None) == 50
    assert query_limit("200") == 200
    for bad in ["0", "201", "-1", "x", "1e3"]:
        with pytest.raises(ApiError):
            query_limit(bad)


def test_rules_need_every_field_with_the_right_type() -> None:
    good = {"moderation": "rules", "moderation_words": ["a"], "blocked_words": [], "max_links": 0,
            "auto_approve_known_authors": True, "flood_seconds": 0, "edit_window_seconds": 60,
            "spam_threshold": 0.9, "hold_threshold": 0.3}
    assert rules_in(good).moderation == "rules"
    for name, bad in {"moderation": "some", "moderation_words": "a", "blocked_words": [1], "max_links": -1,
                      "auto_approve_known_authors": 1, "flood_seconds": True, "edit_window_seconds": 1.5,
                      "spam_threshold": 1.5, "hold_threshold": "0.1"}.items():
        with pytest.raises(ApiError) as caught:
            rules_in({**good, name: bad})
        assert list(caught.value.fields) == [name]
    with pytest.raises(ApiError) as caught:
        rules_in({})
    assert len(caught.value.fields) == 9
    with pytest.raises(ApiError) as caught:
        rules_in({**good, "hold_threshold": 0.95})
    assert list(caught.value.fields) == ["hold_threshold"]
