"""The Postman collection: well-formed v2.1, and every request gets the status it expects."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
import pytest

from tests.conftest import Stack, http_call

COLLECTION_PATH = Path(__file__).resolve().parents[1] / "postman/pullchat.postman_collection.json"
COLLECTION: dict[str, Any] = orjson.loads(COLLECTION_PATH.read_bytes())
SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE = "{{baseUrl}}"
STATUS_IN_SCRIPT = re.compile(r"pm\.response\.to\.have\.status\((\d{3})\)")
STATUS_IN_NAME = re.compile(r"\(expects (\d{3})\)")


def requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every request item, in collection order, folders walked depth first."""
    for item in items:
        if "item" in item:
            yield from requests(item["item"])
        else:
            yield item


ITEMS = list(requests(COLLECTION["item"]))


def enabled(pairs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["key"], p["value"]) for p in pairs if not p.get("disabled")]


def test_schema_and_base_url_variable() -> None:
    """A v2.1 collection with a baseUrl variable that defaults to the local front end."""
    info = COLLECTION["info"]
    assert info["schema"] == SCHEMA_V21
    assert info["name"] and isinstance(COLLECTION["item"], list)
    variables = {v["key"]: v["value"] for v in COLLECTION["variable"]}
    assert variables == {"baseUrl": "http://localhost:8080"}


def test_items_are_well_formed() -> None:
    """Unique names; urls as Postman exports them, all on {{baseUrl}}; a status test each."""
    names = [item["name"] for item in ITEMS]
    assert len(ITEMS) >= 12 and len(names) == len(set(names)), names
    for item in ITEMS:
        request, url = item["request"], item["request"]["url"]
        assert set(url) >= {"raw", "host", "path", "query"}, item["name"]
        assert url["host"] == [BASE], item["name"]
        query = "&".join(f"{k}={v}" for k, v in enabled(url["query"]))
        expected_raw = f"{BASE}/" + "/".join(url["path"]) + (f"?{query}" if query else "")
        assert url["raw"] == expected_raw, item["name"]
        assert request["method"] in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
        assert all(set(h) >= {"key", "value"} for h in request["header"]), item["name"]
        body = request.get("body")
        if body is not None:
            assert body["mode"] in {"raw", "urlencoded", "formdata"}, item["name"]
            assert body["mode"] in body, item["name"]
            if request["method"] == "GET":  # else Postman drops the body of a GET
                assert item["protocolProfileBehavior"]["disableBodyPruning"] is True
        tests = [e for e in item["event"] if e["listen"] == "test"]
        assert len(tests) == 1 and tests[0]["script"]["type"] == "text/javascript"
        expected_status(item)  # parses, and agrees with the name


def test_collection_covers_the_api() -> None:
    """Pings, sends in every body format, pulls both ways and with a body, errors."""
    seen = {(i["request"]["method"], "/" + "/".join(i["request"]["url"]["path"])) for i in ITEMS}
    assert {("GET", "/ping"), ("POST", "/api/send"), ("GET", "/api/pull")} <= seen
    modes = {i["request"]["body"]["mode"] for i in ITEMS if "body" in i["request"]}
    assert modes == {"raw", "urlencoded", "formdata"}
    assert any(h["key"] == "Idempotency-Key" for i in ITEMS for h in i["request"]["header"])
    statuses = [expected_status(item) for item in ITEMS]
    assert statuses.count(200) >= 9 and 400 in statuses and len(set(statuses)) >= 3


def expected_status(item: dict[str, Any]) -> int:
    """The status the item's test script asserts; an "(expects N)" name must agree."""
    script = "\n".join(
        line for e in item["event"] if e["listen"] == "test" for line in e["script"]["exec"]
    )
    found = {int(s) for s in STATUS_IN_SCRIPT.findall(script)}
    assert len(found) == 1, (item["name"], found)
    status = found.pop()
    named = STATUS_IN_NAME.search(item["name"])
    assert status == (int(named.group(1)) if named else 200), item["name"]
    return status


def multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in fields
    ]
    return "".join([*parts, f"--{boundary}--\r\n"]).encode(), boundary


def build(item: dict[str, Any], base: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, target, body, headers) of an item, as Postman would send it to `base`."""
    request = item["request"]
    url = request["url"]
    target = urlsplit(url["raw"].replace(BASE, base, 1)).path
    if query := enabled(url["query"]):
        target += "?" + urlencode(query, quote_via=quote)
    headers = dict(enabled(request["header"]))
    body: bytes | None = None
    spec = request.get("body")
    if spec is not None:
        mode = spec["mode"]
        lowered = {k.lower() for k in headers}
        if mode == "raw":
            body = spec["raw"].encode()
            language = spec.get("options", {}).get("raw", {}).get("language")
            if language == "json" and "content-type" not in lowered:
                headers["Content-Type"] = "application/json"
        elif mode == "urlencoded":
            body = urlencode(enabled(spec["urlencoded"]), quote_via=quote).encode()
            if "content-type" not in lowered:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif mode == "formdata":
            body, boundary = multipart(enabled(spec["formdata"]))
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            raise AssertionError(f"{item['name']}: body mode {mode!r}")
    for text in (target, *headers.values(), (body or b"").decode()):
        assert "{{" not in text, (item["name"], text)
    return request["method"], target, body, headers


@pytest.mark.parametrize("item", ITEMS, ids=[item["name"] for item in ITEMS])
def test_request_gets_the_status_its_script_expects(stack: Stack, item: dict[str, Any]) -> None:
    """Sent to the live stack, each request gets its expected status and a JSON answer."""
    status = expected_status(item)
    method, target, body, headers = build(item, stack.base)
    got, answer, _ = http_call(stack.base, method, target, body, headers)
    assert got == status, (item["name"], answer)
    assert isinstance(answer, dict), answer
    if status >= 400:
        assert answer["code"] == status and answer["msg"], answer
    elif "code" in answer:
        assert (answer["code"], answer["msg"]) == (0, "success"), answer
