"""The chat page at / in a real headless Chromium (Debian's), driven by Playwright.

Two browser contexts are two users with their own storage. The page uses the
public API only, so each test also checks the API's answers where the page
shows a state (an unread count, a read cursor). ``PULLCHAT_SCREENSHOT=path``
saves the two-user screenshot there too (``make screenshot`` writes the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from launcher.stack import Stack
from tests.client import http_call, request
from tests.stacks import StackFactory

SHOWN_WITHIN_MS = 1000  # the promise: the other's message on screen within a second


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser tests need Debian's chromium (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def user(name: str = "user") -> str:
    """A name nobody else in the session uses."""
    return f"{name}-{uuid.uuid4().hex[:4]}"


def open_as(browser: Browser, base: str, name: str, width: int = 900) -> Page:
    """A page of a fresh context (its own storage), signed in as `name`."""
    page = browser.new_context(viewport={"width": width, "height": 640}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#me-name")).to_have_text(name)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def open_chat(page: Page, peer: str) -> None:
    page.get_by_label("Chat with").fill(peer)
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#chat-title")).to_have_text(peer)


def type_and_send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def messages(page: Page) -> list[str]:
    return page.locator("#messages li:not(.pending) .text").all_inner_texts()


def send(base: str, sender: str, receiver: str, text: str) -> int:
    body = orjson.dumps({"sender": sender, "receiver": receiver, "text": text})
    status, reply, _ = http_call(base, "POST", "/api/send", body)
    assert status == 200, reply
    send_time: int = reply["send_time"]
    return send_time


def unread(base: str, name: str, peer: str) -> int:
    status, reply, _ = http_call(base, "GET", f"/api/chats?user={quote(name)}")
    assert status == 200, reply
    found = [c["unread"] for c in reply["chats"] if c["peer"] == peer]
    assert found, reply
    count: int = found[0]
    return count


def test_the_page_and_its_files_are_served_strictly(stack: Stack) -> None:
    page = request(stack.base, "GET", "/")
    assert page.status == 200 and page.content_type == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    html = page.raw.decode()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/web/app.js" defer>']
    assert not re.search(r"\son[a-z]+=|\sstyle=|javascript:", html)  # nothing inline
    for path, media in (
        ("/web/app.js", "text/javascript"),
        ("/web/app.css", "text/css"),
        ("/web/icon.svg", "image/svg+xml"),
    ):
        reply = request(stack.base, "GET", path)
        headers = reply.headers
        assert reply.status == 200 and reply.content_type.startswith(media), path
        assert (
            headers["cache-control"] == "no-cache"
            and headers["x-content-type-options"] == "nosniff"
        )
        again = request(
            stack.base, "GET", path, headers={"If-Modified-Since": headers["last-modified"]}
        )
        assert again.status == 304, path
    for path in (
        "/web/../web_client.py",
        "/web/%2e%2e/web_client.py",
        "/web/..%2fweb_client.py",
        "/web/%2e%2e/%2e%2e/setup.cfg",
        "/web//etc/passwd",
        "/web/missing.js",
    ):
        reply = request(stack.base, "GET", path)
        assert reply.status == 404, (path, reply.status)
        assert orjson.loads(reply.raw)["code"] == 404


def test_two_users_see_each_others_messages_live(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    ann, ben = user("ann"), user("ben")
    a, b = open_as(browser, stack.base, ann), open_as(browser, stack.base, ben)
    open_chat(a, ben)
    open_chat(b, ann)
    for text in ("hello ben", "are you there?"):
        type_and_send(a, text)
        expect(b.locator("#messages li .text").last).to_have_text(text, timeout=SHOWN_WITHIN_MS)
    type_and_send(b, "yes, hi ann")
    expect(a.locator("#messages li .text").last).to_have_text(
        "yes, hi ann", timeout=SHOWN_WITHIN_MS
    )
    assert messages(a) == messages(b) == ["hello ben", "are you there?", "yes, hi ann"]
    # Both had the chat open: everything is read, on the server too.
    expect(a.locator("#chats .badge")).to_have_count(0)
    assert unread(stack.base, ann, ben) == 0
    # A message in another chat meanwhile: a badge on that one only.
    send(stack.base, user("cat"), ann, "lunch at noon?")
    expect(a.locator("#chats .badge")).to_have_text(["1"], timeout=5000)
    shot = Path(os.environ.get("PULLCHAT_SCREENSHOT") or tmp_path / "chat.png")
    a.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.errors == b.errors == []  # type: ignore[attr-defined]


def test_unread_badge_appears_and_clears(browser: Browser, stack: Stack) -> None:
    ann, ben = user(), user()
    b = open_as(browser, stack.base, ben)
    send(stack.base, ann, ben, "one")
    send(stack.base, ann, ben, "two")
    badge = b.locator("#chats button", has_text=ann).locator(".badge")
    expect(badge).to_have_text("2", timeout=5000)  # the list's long-poll brings it
    assert unread(stack.base, ben, ann) == 2
    b.locator("#chats button", has_text=ann).click()
    expect(b.locator("#messages li .text")).to_have_text(["one", "two"])
    expect(badge).to_have_count(0)
    deadline_checks = 50
    while unread(stack.base, ben, ann) and deadline_checks:
        b.wait_for_timeout(100)
        deadline_checks -= 1
    assert unread(stack.base, ben, ann) == 0  # the page marked it read


def test_scrolling_up_loads_older_history_without_duplicates(
    browser: Browser, stack: Stack
) -> None:
    ann, ben = user(), user()
    texts = [f"message {n}" for n in range(95)]
    for n, text in enumerate(texts):
        send(stack.base, ann if n % 2 else ben, ann if n % 2 == 0 else ben, text)
    a = open_as(browser, stack.base, ann)
    open_chat(a, ben)
    expect(a.locator("#messages li")).to_have_count(30)  # the newest page first
    assert messages(a) == texts[-30:]
    scroller = a.locator("#scroller")
    for _ in range(20):
        if a.locator("#older").is_hidden():
            break
        scroller.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        a.wait_for_timeout(150)
    expect(a.locator("#older")).to_be_hidden()
    expect(a.locator("#messages li")).to_have_count(95)
    assert messages(a) == texts
    times = a.locator("#messages li").evaluate_all(
        "els => els.map(e => Number(e.dataset.sendTime))"
    )
    assert times == sorted(set(times))


def test_rpc_service_down_shows_reconnecting_and_recovers(
    browser: Browser, redis_url: str, make_stack: StackFactory
) -> None:
    """A send while the RPC service is away: "Reconnecting", retried, stored once; live after."""
    stack = make_stack(redis_url, RPC_TIMEOUT="1")
    ann, ben = user(), user()
    send(stack.base, ben, ann, "before")
    a = open_as(browser, stack.base, ann)
    open_chat(a, ben)
    expect(a.locator("#messages li .text")).to_have_text(["before"])
    stack.rpc.stop()
    type_and_send(a, "sent while it was down")
    status = a.locator("#status")
    expect(status).to_contain_text("Reconnecting", timeout=10_000)
    expect(a.locator("#messages li.pending")).to_have_count(1)
    stack.rpc.start()
    expect(status).to_be_hidden(timeout=10_000)
    expected = ["before", "sent while it was down"]
    expect(a.locator("#messages li:not(.pending) .text")).to_have_text(expected, timeout=10_000)
    send(stack.base, ben, ann, "after")  # the tail's long-poll works again
    expected.append("after")
    expect(a.locator("#messages li .text")).to_have_text(expected, timeout=10_000)
    chat = ":".join(sorted((ann, ben)))
    status_code, page, _ = http_call(stack.base, "GET", f"/api/pull?chat={quote(chat)}&limit=50")
    assert status_code == 200
    assert [m["text"] for m in page["messages"]] == expected  # the retried send stored once
    assert a.errors == []  # type: ignore[attr-defined]


def test_html_in_a_message_is_shown_as_text(browser: Browser, stack: Stack) -> None:
    ann, ben = user(), user()
    hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"><b>bold</b>'
    send(stack.base, ben, ann, hostile)
    a = open_as(browser, stack.base, ann)
    expect(a.locator("#chats .preview")).to_have_text(hostile)
    open_chat(a, ben)
    expect(a.locator("#messages li .text")).to_have_text([hostile])
    assert a.locator("#messages b, #messages img, #messages script").count() == 0
    assert a.evaluate("typeof window.pwned") == "undefined"


def test_api_errors_are_shown_in_words(browser: Browser, stack: Stack) -> None:
    ann = user()
    a = open_as(browser, stack.base, ann)
    open_chat(a, "bad:name")  # a member may not hold ':': the API's 400 says so
    expect(a.locator("#status")).to_have_text(
        "chat: must be two members joined by one ':' (\"alice:bob\")", timeout=5000
    )
    status = a.locator("#status")
    assert "error" in (status.get_attribute("class") or "")


def test_phone_sized_screen_shows_one_pane_at_a_time(browser: Browser, stack: Stack) -> None:
    ann, ben = user(), user()
    send(stack.base, ben, ann, "hi on a phone")
    a = open_as(browser, stack.base, ann, width=380)
    expect(a.locator("#chats button", has_text=ben)).to_be_visible()
    a.locator("#chats button", has_text=ben).click()
    expect(a.locator("#messages li .text")).to_have_text(["hi on a phone"])
    expect(a.locator(".list")).to_be_hidden()
    a.get_by_role("button", name="Back to conversations").click()
    expect(a.locator(".list")).to_be_visible()
    expect(a.locator("#chat")).to_be_hidden()
