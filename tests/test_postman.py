"""The Postman collection: well-formed v2.1, and newman runs it green against a live stack.

The collection's own test scripts do the checking (status, shape of every answer,
paging through the run's messages); this file checks its structure and that newman
ran every request with every assertion passing. `make test` installs newman.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from launcher.stack import Stack

REPO = Path(__file__).resolve().parents[1]
COLLECTION_PATH = REPO / "postman/pullchat.postman_collection.json"
COLLECTION: dict[str, Any] = orjson.loads(COLLECTION_PATH.read_bytes())
# Where `make test` installs newman; NEWMAN (set by make) names it when VENV is not .venv.
NEWMAN = REPO / os.environ.get("NEWMAN", ".venv/node/node_modules/.bin/newman")
NEWMAN_TIMEOUT = 120.0
SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE = "{{baseUrl}}"
STATUS_IN_SCRIPT = re.compile(r"pm\.response\.to\.have\.status\((\d{3})\)")
STATUS_IN_NAME = re.compile(r"\(expects (\d{3})\)")
VARIABLE_USED = re.compile(r"\{\{(\w+)\}\}")
VARIABLE_SET = re.compile(r"pm\.collectionVariables\.set\(\"(\w+)\"")


def requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every request item, in collection order, folders walked depth first."""
    for item in items:
        if "item" in item:
            yield from requests(item["item"])
        else:
            yield item


ITEMS = list(requests(COLLECTION["item"]))
VARIABLES = {v["key"]: v["value"] for v in COLLECTION["variable"]}


def enabled(pairs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["key"], p["value"]) for p in pairs if not p.get("disabled")]


def scripts(events: list[dict[str, Any]], listen: str) -> list[str]:
    return [
        "\n".join(e["script"]["exec"])
        for e in events
        if e["listen"] == listen and e["script"]["type"] == "text/javascript"
    ]


def expected_status(item: dict[str, Any]) -> int:
    """The status the item's test script asserts; an "(expects N)" name must agree."""
    found = {int(s) for s in STATUS_IN_SCRIPT.findall("\n".join(scripts(item["event"], "test")))}
    assert len(found) == 1, (item["name"], found)
    status = found.pop()
    named = STATUS_IN_NAME.search(item["name"])
    assert status == (int(named.group(1)) if named else 200), item["name"]
    return status


def test_schema_and_variables() -> None:
    """A v2.1 collection; baseUrl defaults to the local front end, the rest the scripts set."""
    info = COLLECTION["info"]
    assert info["schema"] == SCHEMA_V21
    assert info["name"] and isinstance(COLLECTION["item"], list)
    assert VARIABLES["baseUrl"] == "http://localhost:8080"
    assert all(value == "" for key, value in VARIABLES.items() if key != "baseUrl"), VARIABLES
    every_script = "\n".join(
        script
        for events in [COLLECTION.get("event", []), *(item["event"] for item in ITEMS)]
        for listen in ("prerequest", "test")
        for script in scripts(events, listen)
    )
    assert set(VARIABLE_SET.findall(every_script)) == set(VARIABLES) - {"baseUrl"}


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
        used = set(VARIABLE_USED.findall(orjson.dumps(request).decode()))
        assert used <= set(VARIABLES), (item["name"], used - set(VARIABLES))
        assert len(scripts(item["event"], "test")) == 1, item["name"]
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


def test_newman_runs_the_collection_green(stack: Stack, tmp_path: Path) -> None:
    """newman runs every request once, in order, and every assertion of the scripts passes."""
    assert NEWMAN.is_file(), f"{NEWMAN} is missing: `make test` installs newman (needs npm)"
    report_path = tmp_path / "newman.json"
    # twice: the second run must not see the first one's messages
    for run in (1, 2):
        done = subprocess.run(
            [
                str(NEWMAN),
                "run",
                str(COLLECTION_PATH),
                "--env-var",
                f"baseUrl={stack.base}",
                "--reporters",
                "cli,json",
                "--reporter-json-export",
                str(report_path),
                "--timeout-request",
                "10000",
                "--color",
                "off",
                "--disable-unicode",
            ],
            capture_output=True,
            text=True,
            timeout=NEWMAN_TIMEOUT,
            cwd=tmp_path,
        )
        output = f"run {run}:\n{done.stdout}\n{done.stderr}"
        assert report_path.is_file(), output
        report = orjson.loads(report_path.read_bytes())["run"]
        stats, executions = report["stats"], report["executions"]
        assert [e["item"]["name"] for e in executions] == [i["name"] for i in ITEMS], output
        assert all("requestError" not in e for e in executions), output
        for execution in executions:
            names = [a["assertion"] for a in execution.get("assertions", [])]
            assert len(names) >= 2 and names[0].startswith("status is "), (names, output)
        assert report["failures"] == [], output
        assert stats["requests"] == {"total": len(ITEMS), "pending": 0, "failed": 0}, output
        assert stats["assertions"]["failed"] == 0, output
        assert stats["assertions"]["total"] >= 2 * len(ITEMS), output
        assert stats["testScripts"]["failed"] == 0 and stats["prerequestScripts"]["failed"] == 0
        assert done.returncode == 0, output
