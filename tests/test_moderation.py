"""The moderation decision, pure: reject as spam, hold for review, or publish."""

from comments.models import Rules, Status
from comments.moderation import Draft, SpamVerdict, decide, matching_words


def draft(body: str = "Nice article.", *, author: str = "Ann", email: str = "ann@example.org",
          url: str | None = None, ip: str | None = "192.0.2.1", links: int = 0) -> Draft:
    return Draft(body, author, email, url, ip, links)


def test_all_mode_holds_every_comment() -> None:
    decision = decide(draft(), Rules())
    assert decision.status is Status.pending
    assert decision.reasons == []


def test_rules_mode_publishes_a_clean_comment() -> None:
    assert decide(draft(), Rules(moderation="rules")).status is Status.approved


def test_blocked_word_files_as_spam_with_a_reason() -> None:
    decision = decide(draft("Buy VIAGRA now"), Rules(moderation="rules", blocked_words=["viagra"]))
    assert decision.status is Status.spam
    assert decision.score == 1.0
    assert decision.reasons == ["blocked words: viagra"]


def test_moderation_words_are_matched_in_every_field_without_case() -> None:
    rules = Rules(moderation="rules", moderation_words=["casino"])
    for kwargs in ({"body": "CaSiNo"}, {"author": "casino king"}, {"email": "x@casino.example"},
                   {"url": "https://casino.example"}, {"ip": "casino"}):
        body = kwargs.pop("body", "fine")
        decision = decide(draft(body, **kwargs), rules)
        assert decision.status is Status.pending, kwargs
        assert decision.reasons == ["moderation words: casino"]


def test_blocked_beats_moderation_words() -> None:
    rules = Rules(moderation="rules", blocked_words=["spam"], moderation_words=["hold"])
    assert decide(draft("hold spam"), rules).status is Status.spam


def test_too_many_links_hold_the_comment() -> None:
    rules = Rules(moderation="rules", max_links=2)
    assert decide(draft(links=2), rules).status is Status.approved
    decision = decide(draft(links=3), rules)
    assert decision.status is Status.pending
    assert decision.reasons == ["3 links"]


def test_known_author_skips_the_queue_in_all_mode_only_when_enabled() -> None:
    assert decide(draft(), Rules(), known_author=True).status is Status.pending
    rules = Rules(auto_approve_known_authors=True)
    assert decide(draft(), rules, known_author=True).status is Status.approved
    assert decide(draft(), rules, known_author=False).status is Status.pending


def test_known_author_is_still_held_by_a_rule() -> None:
    rules = Rules(auto_approve_known_authors=True, moderation_words=["casino"])
    assert decide(draft("casino"), rules, known_author=True).status is Status.pending


def test_spam_verdict_thresholds() -> None:
    rules = Rules(moderation="rules")
    filed = decide(draft(), rules, spam=SpamVerdict(0.95, ["text model 0.95"], 0.9, 0.5))
    assert (filed.status, filed.reasons) == (Status.spam, ["text model 0.95"])
    held = decide(draft(), rules, spam=SpamVerdict(0.6, ["3 links"], 0.9, 0.5))
    assert held.status is Status.pending
    assert decide(draft(), rules, spam=SpamVerdict(0.2, [], 0.9, 0.5)).status is Status.approved


def test_blank_rule_words_never_match() -> None:
    assert matching_words(["", "  "], draft()) == []
