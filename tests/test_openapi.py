"""/openapi.json stays true: every route of the API is in it with its methods and nothing else is,
it loads as OpenAPI 3.1, and real answers (successes and errors) match the schemas it gives."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import Clients, approve, comment, post
from starlette.routing import Route

from comments.errors import STATUS_CODES
from comments.models import Rules
from comments.openapi import document

# Pages for people rather than programs: the moderators' browser UI and the links in emails.
NOT_API = ("/admin", "/mail/")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"demo": True, "rate_limit": "1000/minute"}


def routed(app: Any) -> dict[str, set[str]]:
    """Path -> methods (without HEAD) of every route the app serves, but the pages for people."""
    found: dict[str, set[str]] = {}
    for item in app.routes:
        if isinstance(item, Route) and not item.path_format.startswith(NOT_API):
            found[item.path_format] = set(item.methods or ()) - {"HEAD"}
    return found


def documented(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {path: {m.upper() for m in item if m != "parameters"} for path, item in doc["paths"].items()}


def test_every_route_is_documented_and_nothing_else(app: Any) -> None:
    assert documented(document()) == routed(app)


def test_a_head_request_works_wherever_a_get_does(app: Any) -> None:
    for item in app.routes:
        if isinstance(item, Route) and "GET" in (item.methods or ()):
            assert "HEAD" in (item.methods or ()), item.path


async def test_the_served_document_lists_only_the_routes_this_app_has(client: httpx.AsyncClient, app: Any,
                                                                      settings: Any) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert documented(doc) == routed(app)
    assert "/demo" in doc["paths"]


async def test_without_the_demo_the_demo_is_not_documented(app: Any, settings: Any) -> None:
    from comments.app import create_app

    plain = create_app(settings.model_copy(update={"demo": False}))
    try:
        transport = httpx.ASGITransport(app=plain)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            doc = (await http.get("/openapi.json")).json()
    finally:
        plain.state.service.db.dispose()
    assert "/demo" not in doc["paths"] and "/demo.css" not in doc["paths"]
    assert documented(doc) == routed(plain)


def test_schemathesis_reads_every_operation() -> None:
    schemathesis = pytest.importorskip("schemathesis")
    doc = document()
    loaded = schemathesis.openapi.from_dict(doc)
    operations = {(op.ok().method.upper(), op.ok().path) for op in loaded.get_all_operations()}
    assert operations == {(m, p) for p, methods in documented(doc).items() for m in methods}


def test_the_error_codes_and_the_rules_follow_the_code() -> None:
    schemas = document()["components"]["schemas"]
    assert set(STATUS_CODES.values()) | {"closed"} == set(schemas["Error"]["properties"]["error"]["properties"]
                                                        ["code"]["enum"])
    assert set(schemas["Rules"]["properties"]) == set(Rules.model_fields)
    assert schemas["Rules"]["required"] == list(Rules.model_fields)


# ---- real answers against the document ------------------------------------------------


class Contract:
    """Checks an answer against what the document says about that operation and status."""

    def __init__(self) -> None:
        self.doc = document()
        self.checked: set[tuple[str, str, int]] = set()

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in item:
            section, name = item["$ref"].split("/")[-2:]
            item = self.doc["components"][section][name]
        return item

    def check(self, response: httpx.Response, path: str) -> None:
        jsonschema_rs = pytest.importorskip("jsonschema_rs")
        method = response.request.method.lower()
        status = response.status_code
        operation = self.doc["paths"][path][method]
        assert str(status) in operation["responses"], f"{method} {path} answered {status}: {response.text[:200]}"
        answer = self._resolve(operation["responses"][str(status)])
        media = response.headers.get("content-type", "").split(";")[0]
        if "content" not in answer:
            assert not response.content, f"{method} {path} {status} should have no body"
        else:
            assert media in answer["content"], (method, path, status, media)
            schema = answer["content"][media]["schema"]
            if media == "application/json":
                validator = jsonschema_rs.validator_for({**schema, "components": self.doc["components"]})
                errors = [str(e) for e in validator.iter_errors(response.json())]
                assert errors == [], f"{method} {path} {status}: {errors[:3]}"
        for name, header in answer.get("headers", {}).items():
            if header.get("required"):
                assert name.lower() in response.headers, f"{method} {path} {status} lacks {name}"
        self.checked.add((method, path, status))


async def test_real_answers_match_the_document(clients: Clients, client: httpx.AsyncClient,
                                               mod: httpx.AsyncClient) -> None:
    contract = Contract()
    created = await post(clients, page="/doc/1")
    contract.check(created, "/api/comments")
    first = created.json()
    await approve(mod, first["id"])
    reply = await post(clients, page="/doc/1", parent=first["id"])
    await approve(mod, reply.json()["id"])
    contract.check(await post(clients, page="/doc/1", body="held"), "/api/comments")
    multipart = {k: (None, v) for k, v in comment(page="/doc/2").items()}
    for form in ({"data": comment(page="/doc/2")}, {"files": multipart}):
        contract.check(await clients.client().post("/api/comments", **form), "/api/comments")

    thread = await client.get("/api/comments", params={"page": "/doc/1"})
    contract.check(thread, "/api/comments")
    contract.check(await client.get("/api/comments", params={"page": "/doc/1"},
                                    headers={"If-None-Match": thread.headers["etag"]}), "/api/comments")
    one = "/api/comments/{comment_id}"
    contract.check(await client.get(f"/api/comments/{first['id']}"), one)
    mine = {"X-Edit-Token": first["edit_token"]}
    contract.check(await client.get(f"/api/comments/{first['id']}", headers=mine), one)
    contract.check(await client.patch(f"/api/comments/{first['id']}", json={"body": "Edited."}, headers=mine), one)
    contract.check(await client.get(f"/api/comments/{first['id']}", headers={"X-Edit-Token": "wrong"}), one)
    contract.check(await client.get("/api/comments/999999"), one)
    contract.check(await client.get("/api/counts", params=[("page", "/doc/1"), ("page", "/none")]), "/api/counts")
    contract.check(await client.get("/healthz"), "/healthz")
    contract.check(await client.get("/openapi.json"), "/openapi.json")

    # errors
    contract.check(await client.post("/api/comments", json={"page": "/doc/1"}), "/api/comments")
    contract.check(await client.post("/api/comments", content=b"{", headers={"Content-Type": "application/json"}),
                   "/api/comments")
    contract.check(await client.post("/api/comments", content=b"x", headers={"Content-Type": "text/plain"}),
                   "/api/comments")
    contract.check(await client.post("/api/comments", content=b"x" * 70_000,
                                     headers={"Content-Type": "application/json"}), "/api/comments")
    duplicate = comment(page="/doc/3")
    await clients.client().post("/api/comments", json=duplicate)
    contract.check(await clients.client().post("/api/comments", json=duplicate), "/api/comments")
    contract.check(await client.get("/api/comments", params={"page": "/doc/1", "limit": "0"}), "/api/comments")
    contract.check(await client.get("/api/comments", params={"page": "/doc/1", "cursor": "nonsense"}),
                   "/api/comments")

    # moderators
    contract.check(await client.get("/api/admin/comments"), "/api/admin/comments")
    contract.check(await mod.get("/api/admin/comments", params={"status": "approved"}), "/api/admin/comments")
    full = "/api/admin/comments/{comment_id}"
    contract.check(await mod.get(f"/api/admin/comments/{first['id']}"), full)
    contract.check(await mod.patch(f"/api/admin/comments/{first['id']}", json={"status": "spam", "url": None}), full)
    contract.check(await mod.patch(f"/api/admin/comments/{first['id']}", json={"status": "nope"}), full)
    bulk = {"ids": [first["id"], 99999], "status": "approved"}
    contract.check(await mod.post("/api/admin/comments/bulk", json=bulk), "/api/admin/comments/bulk")
    rules = await mod.get("/api/admin/rules")
    contract.check(rules, "/api/admin/rules")
    contract.check(await mod.put("/api/admin/rules", json=rules.json()), "/api/admin/rules")
    contract.check(await mod.put("/api/admin/rules", json={}), "/api/admin/rules")
    assert (await mod.put("/api/admin/rules", json=rules.json() | {"moderation": "rules"})).status_code == 200
    published = await post(clients, page="/doc/4", body="Published at once, I hope.")
    assert published.status_code == 201
    contract.check(published, "/api/comments")
    contract.check(await mod.get("/api/admin/pages"), "/api/admin/pages")
    contract.check(await mod.patch("/api/admin/pages", params={"page": "/doc/1"}, json={"closed": True}),
                   "/api/admin/pages")
    contract.check(await clients.client().post("/api/comments", json=comment(page="/doc/1")), "/api/comments")
    contract.check(await mod.delete(f"/api/admin/comments/{reply.json()['id']}"), full)
    contract.check(await mod.delete("/api/admin/comments/99999"), full)

    statuses = {status for _, _, status in contract.checked}
    assert {200, 201, 202, 204, 304, 400, 401, 403, 404, 409, 413, 415, 422} <= statuses, statuses


async def test_a_wrong_method_on_bulk_is_405(mod: httpx.AsyncClient) -> None:
    response = await mod.patch("/api/admin/comments/bulk", json={"ids": [1], "status": "trash"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
