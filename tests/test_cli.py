"""The `comments` command in-process: moderator tokens, db upgrade, configuration errors,
and the README's configuration table."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import command_line_environment
from sqlmodel import SQLModel

from comments.app import create_app
from comments.cli import main
from comments.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
TOKEN = re.compile(r"[A-Za-z0-9_-]{43,}")


@pytest.fixture(autouse=True)
def environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """For tests that use a database: only our COMMENTS_* variables, no .env file in reach, and
    logging put back afterwards (the CLI configures logging onto the captured stderr)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    database_url = request.getfixturevalue("database_url")
    with command_line_environment(monkeypatch, tmp_path, database_url, email_key=None):
        yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def all_values(url: str) -> list[str]:
    """Every value in every table, as text."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(value) for table in SQLModel.metadata.sorted_tables
                    for row in conn.execute(sa.select(table)) for value in row]
    finally:
        engine.dispose()


def token_rows(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.exec_driver_sql("SELECT * FROM moderator_token")]
    finally:
        engine.dispose()


def test_token_create_prints_the_token_once_and_stores_only_its_hash(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code, out, err = run(capsys, "token", "create", "alice")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    token = lines[0].strip()
    assert TOKEN.fullmatch(token), token
    assert out.count(token) == 1

    rows = token_rows(database_url)
    assert len(rows) == 1
    assert rows[0]["name"] == "alice"
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert all(str(value) != token for value in rows[0].values())
    assert not any(token in value for value in all_values(database_url))

    _, out2, _ = run(capsys, "token", "create", "bob")
    assert out2.strip() != token


def test_a_duplicate_name_fails(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    assert run(capsys, "token", "create", "alice")[0] == 0
    code, out, err = run(capsys, "token", "create", "alice")
    assert code == 1
    assert out == ""
    assert "alice" in err
    assert len(token_rows(database_url)) == 1


@pytest.mark.parametrize("name", ["has space", "a/b", "_leading", "x" * 101, "é", "semi;colon"])
def test_a_bad_name_is_a_usage_error(capsys: pytest.CaptureFixture[str], database_url: str, name: str) -> None:
    code, out, err = run(capsys, "token", "create", name)
    assert code == 2
    assert out == ""
    assert err.strip()
    assert token_rows(database_url) == []


def test_token_list_shows_names_and_never_tokens(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    tokens = {name: run(capsys, "token", "create", name)[1].strip() for name in ("alice", "bob.smith@x")}
    code, out, err = run(capsys, "token", "list")
    assert code == 0, err
    hashes = [str(row["token_hash"]) for row in token_rows(database_url)]
    for name, token in tokens.items():
        assert name in out
        assert token not in out + err
        assert token[:12] not in out + err
    for digest in hashes:
        assert digest not in out and digest[:12] not in out
    assert len(out.splitlines()) == 2


def test_token_list_when_empty(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    code, out, _ = run(capsys, "token", "list")
    assert code == 0
    assert out.strip() == ""


async def admin_status(database_url: str, token: str) -> int:
    app = create_app(Settings(database_url=database_url, _env_file=None))  # type: ignore[call-arg]
    try:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/api/admin/comments", headers={"Authorization": f"Bearer {token}"})
            return response.status_code
    finally:
        app.state.service.db.dispose()


async def test_token_revoke(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    token = run(capsys, "token", "create", "alice")[1].strip()
    other = run(capsys, "token", "create", "bob")[1].strip()
    assert await admin_status(database_url, token) == 200

    code, out, err = run(capsys, "token", "revoke", "alice")
    assert code == 0, err
    assert "alice" in out
    assert token not in out
    assert await admin_status(database_url, token) == 401
    assert await admin_status(database_url, other) == 200
    assert [row["name"] for row in token_rows(database_url)] == ["bob"]
    listed = run(capsys, "token", "list")[1]
    assert "alice" not in listed and "bob" in listed

    # the name is free again, and the new token is a different one
    fresh = run(capsys, "token", "create", "alice")[1].strip()
    assert fresh != token
    assert await admin_status(database_url, fresh) == 200
    assert await admin_status(database_url, token) == 401


def test_revoking_an_unknown_name_fails(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    run(capsys, "token", "create", "alice")
    code, out, err = run(capsys, "token", "revoke", "nobody")
    assert code == 1
    assert out == ""
    assert "nobody" in err
    assert len(token_rows(database_url)) == 1


def test_db_upgrade(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    assert out.strip()
    assert run(capsys, "db", "upgrade")[0] == 0


def test_db_upgrade_on_a_new_sqlite_file(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "new.db"
    monkeypatch.setenv("COMMENTS_DATABASE_URL", f"sqlite:///{path}")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        assert {"comment", "moderator_token", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert run(capsys, "token", "create", "alice")[0] == 0


@pytest.mark.parametrize(("variable", "value"), [
    ("COMMENTS_RATE_LIMIT", "lots"),
    ("COMMENTS_MAX_BODY_CHARS", "-1"),
    ("COMMENTS_MAX_BODY_CHARS", "many"),
    ("COMMENTS_MAX_REQUEST_BYTES", "10"),
    ("COMMENTS_DATABASE_URL", "mysql://x"),
    ("COMMENTS_DATABASE_URL", "not a url"),
    ("COMMENTS_SITE_ORIGINS", "not-an-origin"),
    ("COMMENTS_SITE_ORIGINS", "https://ok.example,ftp://bad.example"),
    ("COMMENTS_TRUSTED_PROXIES", "foo"),
    ("COMMENTS_SECRET_KEY", "short"),
    ("COMMENTS_DB_TIMEOUT_SECONDS", "0"),
    ("COMMENTS_LOG_LEVEL", "LOUD"),
])
@pytest.mark.parametrize("command", [["token", "list"], ["db", "upgrade"]])
def test_a_wrong_setting_stops_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str, variable: str,
    value: str, command: list[str],
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, *command)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert variable in err
    assert "Traceback" not in err


def test_a_database_that_does_not_answer_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    monkeypatch.setenv("COMMENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    code, out, err = run(capsys, "token", "list")
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert "COMMENTS_DATABASE_URL" in err
    assert "Traceback" not in err


# ---- the README's configuration table ---------------------------------------------------


def configuration_rows(text: str) -> list[str]:
    """The markdown table rows of the section whose heading contains "Configuration"."""
    lines = text.splitlines()
    rows: list[str] = []
    level = None
    fenced = False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            depth = len(heading.group(1))
            if level is not None and depth <= level:
                break
            if level is None and "configuration" in heading.group(2).lower():
                level = depth
            continue
        if level is not None and not fenced and line.strip().startswith("|"):
            rows.append(line)
    return rows


def test_configuration_rows_parser() -> None:
    text = "\n".join([
        "# x", "| COMMENTS_NOT_HERE | |", "## Configuration", "", "| variable | default |", "|---|---|",
        "| `COMMENTS_A` | 1 |", "### Details", "| `COMMENTS_B` | 2 |", "## Next", "| `COMMENTS_C` | 3 |",
    ])
    rows = configuration_rows(text)
    assert any("COMMENTS_A" in r for r in rows)
    assert any("COMMENTS_B" in r for r in rows)
    assert not any("COMMENTS_C" in r or "COMMENTS_NOT_HERE" in r for r in rows)


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    rows = configuration_rows(README.read_text(encoding="utf-8"))
    assert rows, "README.md has no table under a heading that contains 'Configuration'"
    missing = []
    for name in Settings.model_fields:
        variable = f"COMMENTS_{name.upper()}"
        if not any(re.search(rf"(?<![A-Z0-9_]){variable}(?![A-Z0-9_])", row) for row in rows):
            missing.append(variable)
    assert missing == [], f"missing from README.md's configuration table: {missing}"
