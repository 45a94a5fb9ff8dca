"""`comments spam train` and `comments spam evaluate` in-process: progress, all-or-nothing training with
the line of a corrupt file, the evaluation's figures, and a regression floor on the real corpus."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from comments.cli import main
from comments.models import SpamFeature, SpamTotals
from conftest import TEST_EMAIL_KEY, command_line_environment

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "spam"
TRAIN_FILES = ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv", "Youtube03-LMFAO.csv")
TEST_FILES = ("Youtube04-Eminem.csv", "Youtube05-Shakira.csv")
HEADER = ["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"]

SPAM_TEXTS = [
    "check out my channel and subscribe {n}",
    "free gift cards at my website, visit now {n}",
    "make money fast from home, click my profile {n}",
    "please subscribe to my channel, I sub back {n}",
    "win a free phone today, go to prizes-{n} dot com",
]
HAM_TEXTS = [
    "this song still gives me chills, listening again {n}",
    "the chorus is so good, I love this video {n}",
    "who else is here in {n}? still a classic",
    "her voice in the second verse is amazing {n}",
    "I remember dancing to this at school, good times {n}",
]


@pytest.fixture(autouse=True)
def environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only our COMMENTS_* variables, no .env file in reach, logging put back afterwards (the CLI
    configures logging onto the captured stderr)."""
    if "database_url" in request.fixturenames:
        url = request.getfixturevalue("database_url")
    else:
        url = f"sqlite:///{tmp_path / 'unused.db'}"
    with command_line_environment(monkeypatch, tmp_path, url):
        yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def model_state(url: str) -> tuple[tuple[int, int] | None, dict[str, tuple[int, int]]]:
    """(spam_docs, ham_docs) or None, and every row of spam_feature."""
    totals_t: sa.Table = SpamTotals.__table__  # type: ignore[attr-defined]
    feature_t: sa.Table = SpamFeature.__table__  # type: ignore[attr-defined]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(totals_t.c.spam_docs, totals_t.c.ham_docs)).first()
            rows = {r.feature: (r.spam, r.ham) for r in conn.execute(sa.select(feature_t))}
    finally:
        engine.dispose()
    return (None if row is None else (int(row.spam_docs), int(row.ham_docs))), rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def corpus_rows(count: int, offset: int = 0, prefix: str = "c") -> list[list[str]]:
    """`count` labelled comments, alternating spam and not spam, dated in order."""
    rows = []
    for i in range(offset, offset + count):
        is_spam = i % 2 == 0
        texts = SPAM_TEXTS if is_spam else HAM_TEXTS
        text = texts[(i // 2) % len(texts)].format(n=i)
        author = f"Spammer {i % 3}" if is_spam else f"Fan {i}"
        rows.append([f"{prefix}{i}", author, f"2014-01-{i % 28 + 1:02d}T10:{i % 60:02d}:00", text, "1" if is_spam else "0"])
    return rows


# ---- train --------------------------------------------------------------------------------


def test_train_learns_every_row_and_shows_progress(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "first.csv", corpus_rows(12))
    second = write_csv(tmp_path / "second.csv", corpus_rows(5, offset=12, prefix="d"))
    code, out, err = run(capsys, "spam", "train", str(first), str(second))
    assert code == 0, err
    assert out.strip() == "learned 17 labelled comments"
    assert "learned 17/17 (100 %)" in err
    totals, features = model_state(database_url)
    assert totals == (9, 8)
    assert features and all(s >= 0 and h >= 0 and s + h > 0 for s, h in features.values())

    code, out, err = run(capsys, "spam", "train", str(first))  # more training adds up
    assert code == 0, err
    assert model_state(database_url)[0] == (15, 14)


def test_train_reads_quoted_fields_html_and_a_byte_order_mark(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "quoted.csv"
    rows = [["q1", "Ann, \"the\" fan", "", "line one\nline two, with a comma", "0"],
            ["q2", "Bot", "2014-01-01T00:00:00", 'check <a href="http://x.example.com">this</a> &#39;now&#39;', "1"],
            ["q3", "", "", "", "0"]]
    write_csv(path, rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, out, err = run(capsys, "spam", "train", str(path))
    assert code == 0, err
    assert out.strip() == "learned 3 labelled comments"
    assert model_state(database_url)[0] == (1, 2)


BAD_CLASS = [["r2", "A", "", "fine text", "0"], ["r3", "B", "", "more fine text", "1"],
             ["r4", "C", "", "the bad row", "spam"]]
MULTILINE_THEN_BAD = [["r2", "A", "", "two\nlines", "0"], ["r4", "C", "", "the bad row", "2"]]


@pytest.mark.parametrize(("rows", "line", "message"), [
    (BAD_CLASS, 4, "CLASS must be 0 or 1"),
    (MULTILINE_THEN_BAD, 4, "CLASS must be 0 or 1"),
    ([["r2", "A", "", "ok", "0"], ["r3", "B", "", "ok", "1"], ["r4", "C", "", "too few"]], 4, "expected 5 fields"),
    ([["r2", "A", "", "ok", "0"], ["r3", "B", "", "ok", "1"], ["r4", "C", "yesterday", "x", "1"]], 4, "DATE"),
], ids=["bad class", "bad class after a two-line field", "missing field", "bad date"])
def test_a_corrupt_file_stops_with_its_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path,
    rows: list[list[str]], line: int, message: str,
) -> None:
    good = write_csv(tmp_path / "good.csv", corpus_rows(6))
    assert run(capsys, "spam", "train", str(good))[0] == 0
    before = model_state(database_url)
    assert before[0] == (3, 3)

    bad = write_csv(tmp_path / "bad.csv", rows)
    code, out, err = run(capsys, "spam", "train", str(good), str(bad))
    assert code == 1
    assert f"{bad}:{line}: " in err and message in err, err
    assert "nothing was learned" in err
    assert "Traceback" not in err and out == ""
    assert model_state(database_url) == before  # not even the good file given before it


@pytest.mark.parametrize("problem", ["not utf-8", "no header", "missing column", "empty", "missing file"])
def test_other_unreadable_files(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "broken.csv"
    if problem == "not utf-8":
        write_csv(path, [["a", "B", "", "fine", "0"]])
        path.write_bytes(path.read_bytes() + b"b,C,,caf\xe9,1\n")
        expected = f"{path}:3: "
    elif problem == "no header":
        path.write_text("x1,Ann,,hello,0\n", encoding="utf-8")
        expected = f"{path}:1: "
    elif problem == "missing column":
        write_csv(path, [["a", "B", "fine"]], header=["COMMENT_ID", "AUTHOR", "CONTENT"])
        expected = f"{path}:1: "
    elif problem == "empty":
        path.write_bytes(b"")
        expected = f"{path}:1: "
    else:
        expected = "cannot read"
    code, out, err = run(capsys, "spam", "train", str(path))
    assert code == 1
    assert expected in err, err
    assert "Traceback" not in err
    assert model_state(database_url)[0] is None


# ---- evaluate --------------------------------------------------------------------------------

FIGURES = re.compile(r"precision (?P<p>[\d.]+)\s+recall (?P<r>[\d.]+)\s+F1 (?P<f1>[\d.]+)\s+"
                     r"false-positive rate (?P<fpr>[\d.]+) %")
SPAM_ROW = re.compile(r"^\s*spam\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)
HAM_ROW = re.compile(r"^\s*not spam\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)
REFUSED = re.compile(r"refused as duplicates \(409, not judged\): (\d+)")


def figures(out: str) -> tuple[dict[str, float], tuple[int, int, int, int], int]:
    """The printed figures, the confusion matrix (tp, fn, fp, tn) and the refused count."""
    found = FIGURES.search(out)
    spam_row, ham_row, refused = SPAM_ROW.search(out), HAM_ROW.search(out), REFUSED.search(out)
    assert found and spam_row and ham_row and refused, out
    values = {k: float(v) for k, v in found.groupdict().items()}
    tp, fn = map(int, spam_row.groups())
    fp, tn = map(int, ham_row.groups())
    return values, (tp, fn, fp, tn), int(refused.group(1))


def test_evaluate_prints_the_figures_and_the_confusion_matrix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", corpus_rows(40))
    test = write_csv(tmp_path / "test.csv", corpus_rows(20, offset=40, prefix="t"))
    code, out, err = run(capsys, "spam", "evaluate", "--train", str(train), "--test", str(test))
    assert code == 0, err
    assert "confusion matrix" in out and "thresholds: spam 0.5, hold 0.2" in out
    values, (tp, fn, fp, tn), refused = figures(out)
    assert tp + fn + fp + tn + refused == 20
    assert tp + fn + fp + tn > 0
    assert 0 <= values["p"] <= 1 and 0 <= values["r"] <= 1 and 0 <= values["f1"] <= 1 and 0 <= values["fpr"] <= 100
    expected_recall = tp / (tp + fn) if tp + fn else 1.0
    assert values["r"] == pytest.approx(expected_recall, abs=0.0006)
    expected_fpr = 100 * fp / (fp + tn) if fp + tn else 0.0
    assert values["fpr"] == pytest.approx(expected_fpr, abs=0.006)
    assert "replayed 20/20 (100 %)" in err


def test_evaluate_leaves_the_configured_database_alone(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", corpus_rows(10))
    test = write_csv(tmp_path / "test.csv", corpus_rows(6, offset=10, prefix="t"))
    code, _, err = run(capsys, "spam", "evaluate", "--train", str(train), "--test", str(test))
    assert code == 0, err
    assert model_state(database_url) == (None, {})


def test_evaluate_stops_on_a_corrupt_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", corpus_rows(10))
    bad = write_csv(tmp_path / "bad.csv", BAD_CLASS)
    for argv in (["--train", str(bad), "--test", str(train)], ["--train", str(train), "--test", str(bad)]):
        code, out, err = run(capsys, "spam", "evaluate", *argv)
        assert code == 1
        assert f"{bad}:4: " in err and "Traceback" not in err


@pytest.mark.slow
def test_evaluate_on_the_real_corpus_keeps_its_floor(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression floor: F1 >= 0.95 and a false-positive rate <= 2 % on files 04-05 after training on
    01-03. (Measured when the filter landed: F1 0.9573, 1.87 %; the issue's targets, 0.96 and
    1.5 %, are not met yet.)"""
    if not all((CORPUS / name).is_file() for name in TRAIN_FILES + TEST_FILES):
        pytest.skip(f"the labelled corpus is not beside the repository ({CORPUS})")
    code, out, err = run(capsys, "spam", "evaluate", "--train", *(str(CORPUS / n) for n in TRAIN_FILES),
                         "--test", *(str(CORPUS / n) for n in TEST_FILES))
    assert code == 0, err
    values, (tp, fn, fp, tn), refused = figures(out)
    assert tp + fn + fp + tn + refused == 525
    assert values["f1"] >= 0.95, out
    assert values["fpr"] <= 2.0, out
