// pullchat's chat page: the public API in use (send, pull with wait, chats, read), nothing else.
//
// Two long-polls run while the page is open: the conversation list
// (GET /api/chats with wait/since) and the open chat's tail
// (GET /api/pull with wait from tail_cursor). Older messages come page by
// page (reverse pulls) when the list is scrolled to the top. Every text is
// put in the page as text (textContent), never as HTML.
"use strict";

const WAIT = 25; // seconds a long-poll may be held by the server
const PAGE = 30; // messages per page of history
const RETRY_MIN = 500; // ms before retrying after a network error, doubled up to RETRY_MAX
const RETRY_MAX = 5000;

const $ = (id) => document.getElementById(id);

const state = {
  me: "",
  chats: new Map(), // chat -> entry of GET /api/chats
  since: 0, // latest_activity of the last list seen
  open: null, // the open chat: {chat, peer, older, tail, seen: Set of send_time, epoch}
  epoch: 0, // bumped when the open chat changes or the user signs out: stale loops stop
  abort: new AbortController(), // aborts the requests of the loops of the last epoch
  offline: false,
};

// A new epoch: the loops of the last one stop, and their held requests are aborted.
function nextEpoch() {
  state.abort.abort();
  state.abort = new AbortController();
  return ++state.epoch;
}

// ---- the API ---------------------------------------------------------------

class ApiError extends Error {} // the server answered with an error: its msg, in words
class Offline extends Error {} // the server could not be reached

async function api(method, path, params, signal = state.abort.signal) {
  const query = new URLSearchParams(params).toString();
  const init = {method, signal, headers: {}};
  let url = path;
  if (method === "GET") {
    url += "?" + query;
  } else {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(params);
  }
  if (params.client_msg_id) init.headers["Idempotency-Key"] = params.client_msg_id;
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Offline("the server cannot be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    if (err.name === "AbortError") throw err;
  }
  if (response.status >= 500 || body === null) {
    throw new Offline((body && body.msg) || `the server answered ${response.status}`);
  }
  if (!response.ok) throw new ApiError(body.msg || `the server answered ${response.status}`);
  online();
  return body;
}

// ---- status line -------------------------------------------------------------

function showStatus(text, isError) {
  const line = $("status");
  line.textContent = text;
  line.classList.toggle("error", Boolean(isError));
  line.hidden = !text;
}

function offline(err) {
  state.offline = true;
  showStatus(`Reconnecting… (${err.message})`, false);
}

function online() {
  if (state.offline) {
    state.offline = false;
    showStatus("", false);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Run `step` again and again while `alive()` (or until it succeeds, with `once`).
// A network error shows "Reconnecting" and the step is retried after a pause that
// grows; an error answer of the API is shown in its words and ends the loop.
async function keepPolling(step, alive, once = false) {
  let pause = RETRY_MIN;
  while (alive()) {
    try {
      await step();
      if (once) return;
      pause = RETRY_MIN;
    } catch (err) {
      if (!alive() || err.name === "AbortError") return;
      if (err instanceof ApiError) {
        showStatus(err.message, true); // asking again would get the same answer
        return;
      }
      offline(err);
      await sleep(pause);
      pause = Math.min(pause * 2, RETRY_MAX);
    }
  }
}

// ---- names -------------------------------------------------------------------

// The canonical chat: the two names sorted by code point (as the server sorts them).
function chatOf(a, b) {
  const ca = Array.from(a, (c) => c.codePointAt(0));
  const cb = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) {
    if (ca[i] !== cb[i]) return ca[i] < cb[i] ? `${a}:${b}` : `${b}:${a}`;
  }
  return ca.length <= cb.length ? `${a}:${b}` : `${b}:${a}`;
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function timeOf(sendTime) {
  const when = new Date(sendTime / 1000);
  const today = new Date().toDateString() === when.toDateString();
  return today ? when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}) : when.toLocaleDateString();
}

// ---- the conversation list ----------------------------------------------------------

async function listLoop(epoch) {
  state.since = 0;
  const alive = () => state.epoch === epoch;
  let first = true;
  await keepPolling(async () => {
    const params = {user: state.me, limit: 100};
    if (!first) Object.assign(params, {wait: WAIT, since: state.since});
    const page = await api("GET", "/api/chats", params);
    if (!alive()) return;
    first = false;
    state.since = page.latest_activity;
    state.chats = new Map(page.chats.map((c) => [c.chat, c]));
    renderList();
  }, alive);
}

function renderList() {
  const list = $("chats");
  const items = [];
  for (const entry of state.chats.values()) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.chat = entry.chat;
    if (state.open && state.open.chat === entry.chat) button.setAttribute("aria-current", "true");
    const peer = document.createElement("span");
    peer.className = "peer";
    peer.textContent = entry.peer;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = timeOf(entry.last_message.send_time);
    const preview = document.createElement("span");
    preview.className = "preview";
    const mine = entry.last_message.sender === state.me;
    preview.textContent = (mine ? "You: " : "") + entry.last_message.text;
    button.append(peer, time, preview);
    const unread = isOpenAndVisible(entry.chat) ? 0 : entry.unread;
    if (unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = String(unread);
      badge.setAttribute("aria-label", `${unread} unread`);
      button.append(badge);
    }
    button.addEventListener("click", () => openChat(entry.peer));
    const item = document.createElement("li");
    item.append(button);
    items.push(item);
  }
  list.replaceChildren(...items);
  $("no-chats").hidden = items.length > 0;
}

// ---- the open chat -------------------------------------------------------------

function isOpenAndVisible(chat) {
  return Boolean(state.open && state.open.chat === chat && !document.hidden);
}

async function openChat(peer) {
  const chat = chatOf(state.me, peer);
  const epoch = nextEpoch();
  state.open = {chat, peer, older: 0, hasOlder: false, tail: 0, seen: new Set(), pending: new Map(), epoch};
  $("chat-title").textContent = peer;
  $("messages").replaceChildren();
  $("older").hidden = true;
  $("chat").hidden = false;
  $("app").classList.add("in-chat");
  renderList();
  listLoop(epoch); // the list loop restarts with each epoch too
  const alive = () => state.epoch === epoch;
  await keepPolling(async () => {
    // The newest page first, then the tail from just after it.
    const page = await api("GET", "/api/pull", {chat, reverse: true, limit: PAGE});
    if (!alive()) return;
    const messages = page.messages.slice().reverse();
    messages.forEach((m) => addMessage(m, "end"));
    state.open.hasOlder = page.has_more;
    state.open.older = page.next_cursor;
    $("older").hidden = !page.has_more;
    state.open.tail = messages.length ? messages[messages.length - 1].send_time + 1 : 0;
    scrollToEnd();
    markRead();
  }, alive, true);
  if (!alive()) return;
  $("text-input").focus();
  await keepPolling(async () => {
    const page = await api("GET", "/api/pull", {chat, cursor: state.open.tail, wait: WAIT});
    if (!alive()) return;
    const atEnd = nearEnd();
    page.messages.forEach((m) => addMessage(m, "end"));
    state.open.tail = page.tail_cursor;
    if (page.messages.length) {
      if (atEnd) scrollToEnd();
      markRead();
    }
  }, alive);
}

async function loadOlder() {
  const open = state.open;
  if (!open || !open.hasOlder || open.loadingOlder) return;
  open.loadingOlder = true;
  try {
    const page = await api("GET", "/api/pull", {chat: open.chat, reverse: true, cursor: open.older, limit: PAGE});
    if (state.open !== open) return;
    const scroller = $("scroller");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    page.messages.forEach((m) => addMessage(m, "start"));
    scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep what was on screen in place
    open.hasOlder = page.has_more;
    open.older = page.next_cursor;
    $("older").hidden = !page.has_more;
  } catch (err) {
    if (err.name === "AbortError") return;
    if (err instanceof Offline) offline(err);
    else showStatus(err.message, true);
  } finally {
    open.loadingOlder = false;
  }
}

function messageItem(m) {
  const item = document.createElement("li");
  item.classList.toggle("mine", m.sender === state.me);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${m.sender === state.me ? "You" : m.sender} · ${timeOf(m.send_time)}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = m.text;
  item.append(meta, text);
  item.dataset.sendTime = String(m.send_time);
  return item;
}

// Show a stored message once, wherever it comes from (history, tail, own send).
function addMessage(m, where) {
  const open = state.open;
  if (!open || m.chat !== open.chat || open.seen.has(m.send_time)) return;
  open.seen.add(m.send_time);
  const item = messageItem(m);
  const list = $("messages");
  const pending = open.pending.get(m.send_time);
  if (pending) {
    pending.replaceWith(item);
    open.pending.delete(m.send_time);
  } else if (where === "start") {
    list.prepend(item);
  } else {
    list.append(item);
  }
}

function nearEnd() {
  const s = $("scroller");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToEnd() {
  const s = $("scroller");
  s.scrollTop = s.scrollHeight;
}

async function markRead() {
  const open = state.open;
  if (!open || document.hidden || open.tail === 0) return;
  try {
    await api("POST", "/api/read", {chat: open.chat, user: state.me, send_time: open.tail - 1});
  } catch (err) {
    return; // the next message marks it again
  }
  const entry = state.chats.get(open.chat);
  if (entry) {
    entry.unread = 0;
    renderList();
  }
}

// ---- sending -------------------------------------------------------------

async function sendMessage(text) {
  const open = state.open;
  const body = {chat: open.chat, sender: state.me, text, client_msg_id: newId()};
  const item = messageItem({sender: state.me, text, send_time: Date.now() * 1000});
  item.classList.add("pending");
  item.querySelector(".meta").textContent = "You · sending…";
  $("messages").append(item);
  scrollToEnd();
  let pause = RETRY_MIN;
  for (;;) {
    try {
      // The same key on every retry: stored once. Not aborted by a change of chat.
      const sent = await api("POST", "/api/send", body, null);
      if (state.open !== open) return;
      if (open.seen.has(sent.send_time)) item.remove(); // the tail brought it first
      else open.pending.set(sent.send_time, item);
      return;
    } catch (err) {
      if (err instanceof ApiError) {
        item.remove();
        showStatus(`Not sent: ${err.message}`, true);
        return;
      }
      offline(err);
      await sleep(pause);
      pause = Math.min(pause * 2, RETRY_MAX);
    }
  }
}

// ---- wiring ----------------------------------------------------------------

function signIn(name) {
  state.me = name;
  localStorage.setItem("pullchat.name", name);
  $("me-name").textContent = name;
  $("me-line").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("chat").hidden = true;
  state.open = null;
  listLoop(nextEpoch());
  $("peer-input").focus();
}

function signOut() {
  nextEpoch();
  state.me = "";
  state.open = null;
  localStorage.removeItem("pullchat.name");
  $("me-line").hidden = true;
  $("app").hidden = true;
  $("sign-in").hidden = false;
  $("name-input").focus();
}

function start() {
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name-input").value.trim();
    if (name) signIn(name);
  });
  $("sign-out").addEventListener("click", signOut);
  $("peer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const peer = $("peer-input").value.trim();
    if (peer) {
      $("peer-input").value = "";
      openChat(peer);
    }
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text-input");
    if (!input.value || !state.open) return;
    sendMessage(input.value);
    input.value = "";
  });
  $("text-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("scroller").addEventListener("scroll", () => {
    if ($("scroller").scrollTop < 40) loadOlder();
  });
  $("older").addEventListener("click", loadOlder);
  $("back").addEventListener("click", () => {
    state.open = null;
    $("app").classList.remove("in-chat");
    $("chat").hidden = true;
    listLoop(nextEpoch());
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) markRead();
  });
  const saved = localStorage.getItem("pullchat.name");
  if (saved) signIn(saved);
  else $("name-input").focus();
}

start();
