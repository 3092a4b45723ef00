// Convocore in the browser: plain JavaScript, no build step. REST for everything that is asked
// for, one user socket (/ws/) for everything that happens. The socket reconnects with
// exponential backoff and resumes from the last seq seen per conversation; a resync, or a
// gap, is filled over REST. Tokens live in sessionStorage, so a tab keeps its login on reload.
"use strict";

const SESSION_KEY = "convocore.session";
const TYPING_EVERY_MS = 3000; // the server relays at most 5 typing notices per 5 s per user
const TYPING_SHOWN_MS = 4000;
const RESUME_CHUNK = 200; // conversations per resume frame (frames are at most 16 KiB)
// Where the app is mounted ("/" or e.g. "/chat/"), from this script's own URL (ROOT/static/app.js).
const ROOT = new URL("..", document.currentScript.src).pathname;

// ---------------------------------------------------------------- helpers

const $ = (selector) => document.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12)); // crypto.randomUUID needs a secure context
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function shortWhen(iso) {
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? clock(iso) : at.toLocaleDateString([], { month: "short", day: "numeric" });
}

function initial(name) {
  return (name || "?").trim().charAt(0).toUpperCase() || "?";
}

let toastTimer = null;
function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 4000);
}

// ---------------------------------------------------------------- session and REST

let tokens = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");

function saveTokens(pair) {
  tokens = pair;
  if (pair) sessionStorage.setItem(SESSION_KEY, JSON.stringify(pair));
  else sessionStorage.removeItem(SESSION_KEY);
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let refreshing = null;
function refreshTokens(stale) {
  if (tokens && stale && tokens.access_token !== stale) return Promise.resolve(); // already rotated
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const body = { refresh_token: tokens.refresh_token };
        saveTokens(await call("POST", "/api/token/refresh/", body, { auth: false }));
      } catch (error) {
        if (error.status === 401) signOut("Your session has ended; please log in again.");
        throw error;
      } finally {
        refreshing = null;
      }
    })();
  }
  return refreshing;
}

async function call(method, path, body, { auth = true, retried = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const token = auth && tokens ? tokens.access_token : null;
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(ROOT + path.replace(/^\//, ""), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && token && !retried) {
    await refreshTokens(token); // an expired access token: rotate the pair once, then retry
    return call(method, path, body, { auth, retried: true });
  }
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { detail: response.statusText };
    }
    throw new ApiError(response.status, problem);
  }
  return response.status === 204 ? null : response.json();
}

const query = (params) =>
  new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();

// ---------------------------------------------------------------- state

const state = {
  me: null,
  conversations: new Map(), // id -> inbox item, kept current from frames
  details: new Map(), // id -> conversation with its members
  users: new Map(), // id -> {username, display_name}
  lastSeq: new Map(), // id -> seq of the last message delivered here: what a resume asks for
  online: new Set(), // user ids
  typing: new Map(), // conversation id -> Map(user id -> shown until, ms)
  pending: new Map(), // client_id -> {conversation_id, body, seq, failed}
  view: null, // the open conversation: {id, messages: Map(seq -> message), hasMore}
};

function nameOf(userId) {
  if (userId === state.me?.id) return state.me.display_name;
  const user = state.users.get(userId);
  if (user) return user.display_name || user.username;
  lookUpUser(userId);
  return "…";
}

const lookups = new Set();
async function lookUpUser(userId) {
  if (lookups.has(userId)) return;
  lookups.add(userId);
  try {
    state.users.set(userId, await call("GET", `/api/users/${encodeURIComponent(userId)}/`));
    renderAll();
  } catch {
    // an unknown sender stays "…"
  }
}

function otherMember(conversationId) {
  const detail = state.details.get(conversationId);
  return detail?.members.find((m) => m.user_id !== state.me.id);
}

function titleOf(conversationId) {
  const conversation = state.conversations.get(conversationId) || state.details.get(conversationId);
  if (!conversation) return "";
  if (conversation.kind === "group") return conversation.title || "Untitled group";
  const other = otherMember(conversationId);
  if (!other) {
    loadDetail(conversationId);
    return "Direct conversation";
  }
  return other.display_name || other.username;
}

const detailLoads = new Map();
function loadDetail(conversationId) {
  if (!detailLoads.has(conversationId)) {
    const load = call("GET", `/api/conversations/${encodeURIComponent(conversationId)}/`)
      .then((detail) => {
        state.details.set(conversationId, detail);
        for (const m of detail.members) state.users.set(m.user_id, m);
        renderAll();
        return detail;
      })
      .catch(() => null)
      .finally(() => detailLoads.delete(conversationId));
    detailLoads.set(conversationId, load);
  }
  return detailLoads.get(conversationId);
}

async function loadInbox() {
  const items = [];
  let cursor = null;
  do {
    const page = await call("GET", `/api/conversations/?${query({ limit: 200, cursor })}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  const fresh = new Map(items.map((item) => [item.id, item]));
  for (const item of items) {
    if (!state.lastSeq.has(item.id)) {
      // New to this page: on the first connection, what is there now is history (fetched on
      // opening); later, it is a conversation joined while away, followed from the read marker.
      state.lastSeq.set(item.id, live.connectedOnce ? item.last_read_seq : item.last_seq);
    }
  }
  for (const id of [...state.lastSeq.keys()]) if (!fresh.has(id)) state.lastSeq.delete(id);
  state.conversations = fresh;
  if (state.view && !fresh.has(state.view.id)) closeConversation();
  renderInbox();
}

// ---------------------------------------------------------------- the live socket

const live = { ws: null, attempt: 0, timer: null, connectedOnce: false, stopped: true, chain: Promise.resolve() };

function setStatus(kind, text) {
  const status = $("#status");
  status.className = `status ${kind}`;
  status.querySelector(".status-text").textContent = text || kind;
}

async function connectLive() {
  clearTimeout(live.timer);
  live.timer = null;
  if (live.stopped || live.ws) return;
  setStatus("connecting", "connecting…");
  try {
    await loadInbox(); // read before connecting: the resume then covers everything after it
  } catch (error) {
    if (error.status !== 401) scheduleReconnect();
    return;
  }
  if (live.stopped || live.ws) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${ROOT}ws/?token=${encodeURIComponent(tokens.access_token)}`);
  live.ws = ws;
  ws.onopen = () => {
    const since = [...state.lastSeq.entries()];
    for (let i = 0; i < since.length; i += RESUME_CHUNK) {
      ws.send(JSON.stringify({ type: "resume", since: Object.fromEntries(since.slice(i, i + RESUME_CHUNK)) }));
    }
    ws.send(JSON.stringify({ type: "ping" })); // its pong: subscribed and resumed
  };
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    live.chain = live.chain.then(() => handleFrame(frame)).catch((error) => console.error(error));
  };
  ws.onclose = (event) => {
    if (live.ws !== ws) return;
    live.ws = null;
    onClosed(event);
  };
}

function onClosed(event) {
  if (live.stopped) return;
  if (event.code === 4401) {
    if (event.reason === "logged out") {
      signOut("You were logged out.");
      return;
    }
    refreshTokens().then(scheduleReconnect, () => {}); // expired: a fresh pair, then resume
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (live.stopped || live.timer) return;
  const delay = Math.min(15000, 500 * 2 ** live.attempt) * (0.5 + Math.random() / 2);
  live.attempt += 1;
  let left = Math.ceil(delay / 1000);
  setStatus("reconnecting", `reconnecting in ${left}s`);
  const tick = setInterval(() => {
    left -= 1;
    if (left > 0 && live.timer) setStatus("reconnecting", `reconnecting in ${left}s`);
    else clearInterval(tick);
  }, 1000);
  live.timer = setTimeout(() => {
    clearInterval(tick);
    live.timer = null;
    connectLive();
  }, delay);
}

function sendFrame(frame) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) {
    live.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function onOnline() {
  live.attempt = 0;
  live.connectedOnce = true;
  setStatus("online", "online");
  for (const [clientId, p] of state.pending) {
    // Sends are idempotent per client_id: one already stored is only acknowledged again.
    if (!p.failed) sendFrame({ type: "message.send", conversation_id: p.conversation_id, body: p.body, client_id: clientId });
  }
  // Presence is sent as changes only, and none were replayed: read who is online now.
  const recent = sortedConversations().slice(0, 20).map((item) => item.id);
  if (state.view && !recent.includes(state.view.id)) recent.push(state.view.id);
  for (const id of recent) loadPresence(id);
}

async function handleFrame(frame) {
  const cid = frame.conversation_id;
  switch (frame.type) {
    case "pong":
      onOnline();
      break;
    case "message.created":
      await onMessage(cid, frame.message, false);
      break;
    case "resync":
      await fill(cid, frame.last_seq);
      break;
    case "message.updated":
    case "message.deleted":
      onMessageChanged(frame.message);
      break;
    case "member.joined":
      if (frame.user) state.users.set(frame.user.id, frame.user);
      if (frame.member.user_id === state.me.id) {
        if (!state.lastSeq.has(cid)) state.lastSeq.set(cid, frame.member.last_read_seq);
        await loadInbox();
      } else if (state.details.has(cid)) loadDetail(cid);
      break;
    case "member.left":
      if (frame.user_id === state.me.id) {
        state.conversations.delete(cid);
        state.lastSeq.delete(cid);
        if (state.view?.id === cid) closeConversation();
        renderInbox();
      } else if (state.details.has(cid)) loadDetail(cid);
      break;
    case "member.role_changed":
      if (state.details.has(cid)) loadDetail(cid);
      break;
    case "conversation.updated": {
      const conversation = state.conversations.get(cid);
      if (conversation) conversation.title = frame.title;
      if (state.details.has(cid)) state.details.get(cid).title = frame.title;
      renderAll();
      break;
    }
    case "read":
      if (frame.user_id === state.me.id) {
        const conversation = state.conversations.get(cid);
        if (conversation) conversation.last_read_seq = Math.max(conversation.last_read_seq, frame.seq);
        renderInbox();
      }
      break;
    case "typing":
      if (frame.user_id !== state.me.id) onTyping(cid, frame.user_id);
      break;
    case "presence":
      if (frame.status === "online") state.online.add(frame.user_id);
      else state.online.delete(frame.user_id);
      renderAll();
      break;
    case "ack": {
      const p = state.pending.get(frame.client_id);
      if (p) p.seq = frame.seq;
      if (p && state.view?.messages.has(frame.seq)) state.pending.delete(frame.client_id);
      renderMessages();
      break;
    }
    case "error":
      onErrorFrame(frame);
      break;
  }
}

async function onMessage(cid, message, filling) {
  const last = state.lastSeq.get(cid);
  if (last !== undefined && message.seq <= last) return; // already here
  if (last !== undefined && message.seq > last + 1 && !filling) await fill(cid, message.seq - 1);
  state.lastSeq.set(cid, message.seq);
  if (!state.conversations.has(cid)) await loadInbox(); // a conversation this page has not seen yet
  const conversation = state.conversations.get(cid);
  if (!conversation) return;
  conversation.last_seq = Math.max(conversation.last_seq, message.seq);
  conversation.last_message = message;
  conversation.last_activity_at = message.created_at;
  if (message.sender_id === state.me.id) conversation.last_read_seq = Math.max(conversation.last_read_seq, message.seq);
  if (message.client_id) state.pending.delete(message.client_id);
  state.typing.get(cid)?.delete(message.sender_id);
  if (state.view?.id === cid) {
    state.view.messages.set(message.seq, message);
    renderMessages();
    renderTyping();
    markRead(cid);
  }
  renderInbox();
}

async function fill(cid, upto) {
  // Fetch what the socket could not replay (a resync) or skipped (a gap), oldest first.
  let after = state.lastSeq.get(cid) ?? upto;
  while (after < upto) {
    const params = query({ after, before: upto + 1, limit: 200 });
    const page = await call("GET", `/api/messages/${encodeURIComponent(cid)}/?${params}`);
    for (const message of page.items) {
      await onMessage(cid, message, true);
      after = message.seq;
    }
    if (!page.has_more) break;
  }
  if ((state.lastSeq.get(cid) ?? 0) < upto) state.lastSeq.set(cid, upto);
}

function onMessageChanged(message) {
  const conversation = state.conversations.get(message.conversation_id);
  if (conversation?.last_message?.id === message.id) conversation.last_message = message;
  if (state.view?.id === message.conversation_id && state.view.messages.has(message.seq)) {
    state.view.messages.set(message.seq, message);
    renderMessages();
  }
  renderInbox();
}

function onErrorFrame(frame) {
  if (frame.client_id && state.pending.has(frame.client_id)) {
    state.pending.get(frame.client_id).failed = frame.detail;
    renderMessages();
  } else if (frame.code !== "rate-limited") {
    toast(frame.detail);
  }
}

function onTyping(cid, userId) {
  if (!state.typing.has(cid)) state.typing.set(cid, new Map());
  state.typing.get(cid).set(userId, Date.now() + TYPING_SHOWN_MS);
  renderTyping();
  setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
}

// ---------------------------------------------------------------- actions

let readTimer = null;
function markRead(cid) {
  clearTimeout(readTimer);
  readTimer = setTimeout(async () => {
    const conversation = state.conversations.get(cid);
    if (!conversation || document.hidden || state.view?.id !== cid) return;
    if (conversation.last_read_seq >= conversation.last_seq) return;
    conversation.last_read_seq = conversation.last_seq;
    renderInbox();
    try {
      await call("POST", `/api/conversations/${encodeURIComponent(cid)}/read/`, { seq: conversation.last_seq });
    } catch {
      // the marker is moved again with the next message
    }
  }, 250);
}

async function openConversation(cid) {
  state.view = { id: cid, messages: new Map(), hasMore: false };
  $("#chat").classList.add("viewing");
  $("#placeholder").hidden = true;
  $("#pane").hidden = false;
  renderAll();
  loadDetail(cid);
  loadPresence(cid);
  const page = await call("GET", `/api/messages/${encodeURIComponent(cid)}/?limit=50`);
  if (state.view?.id !== cid) return;
  for (const message of page.items) state.view.messages.set(message.seq, message);
  state.view.hasMore = page.has_more;
  renderMessages({ toBottom: true });
  markRead(cid);
  $("#draft").focus();
}

function closeConversation() {
  state.view = null;
  $("#chat").classList.remove("viewing");
  $("#pane").hidden = true;
  $("#placeholder").hidden = false;
  renderInbox();
}

async function loadOlder() {
  const view = state.view;
  if (!view || view.messages.size === 0) return;
  const oldest = Math.min(...view.messages.keys());
  const page = await call("GET", `/api/messages/${encodeURIComponent(view.id)}/?${query({ before: oldest, limit: 50 })}`);
  if (state.view !== view) return;
  for (const message of page.items) view.messages.set(message.seq, message);
  view.hasMore = page.has_more;
  renderMessages({ keepPlace: true });
}

async function loadPresence(cid) {
  try {
    const snapshot = await call("GET", `/api/conversations/${encodeURIComponent(cid)}/presence/`);
    for (const m of state.details.get(cid)?.members || []) state.online.delete(m.user_id);
    for (const userId of snapshot.online) state.online.add(userId);
    renderAll();
  } catch {
    // presence frames keep it current anyway
  }
}

function sendMessage(body) {
  const cid = state.view.id;
  const clientId = newClientId();
  state.pending.set(clientId, { conversation_id: cid, body, seq: null, failed: null });
  sendFrame({ type: "message.send", conversation_id: cid, body, client_id: clientId }); // else sent on reconnect
  renderMessages({ toBottom: true });
}

let lastTypingSent = 0;
function typed() {
  const now = Date.now();
  if (!state.view || now - lastTypingSent < TYPING_EVERY_MS) return;
  if (sendFrame({ type: "typing", conversation_id: state.view.id })) lastTypingSent = now;
}

async function startConversation(body) {
  const conversation = await call("POST", "/api/conversations/", body);
  state.details.set(conversation.id, conversation);
  for (const m of conversation.members) state.users.set(m.user_id, m);
  if (!state.lastSeq.has(conversation.id)) state.lastSeq.set(conversation.id, 0);
  $("#new-dialog").close(); // first: the modal dialog makes the rest of the page inert
  await loadInbox();
  await openConversation(conversation.id);
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderInbox();
  renderHeader();
  renderMessages();
  renderTyping();
}

function sortedConversations() {
  return [...state.conversations.values()].sort((a, b) =>
    b.last_activity_at < a.last_activity_at ? -1 : b.last_activity_at > a.last_activity_at ? 1 : 0,
  );
}

function renderInbox() {
  const list = $("#inbox");
  const items = sortedConversations();
  $("#inbox-empty").hidden = items.length > 0;
  list.replaceChildren(
    ...items.map((item) => {
      const unread = Math.max(0, item.last_seq - item.last_read_seq);
      const other = item.kind === "direct" ? otherMember(item.id) : null;
      const title = titleOf(item.id);
      const last = item.last_message;
      let preview = "No messages yet";
      if (last) {
        const text = last.deleted ? "message deleted" : last.body;
        preview = last.sender_id === state.me.id ? `You: ${text}` : item.kind === "group" ? `${nameOf(last.sender_id)}: ${text}` : text;
      }
      const avatarClass = `avatar${other && state.online.has(other.user_id) ? " online" : ""}`;
      return el(
        "li",
        {
          class: [state.view?.id === item.id && "active", unread && "has-unread"].filter(Boolean).join(" "),
          dataset: { id: item.id },
          onclick: () => openConversation(item.id),
        },
        el("div", { class: avatarClass }, item.kind === "group" ? "#" : initial(title)),
        el(
          "div",
          { class: "text" },
          el("div", { class: "title" }, el("span", {}, title), el("span", { class: "when" }, shortWhen(item.last_activity_at))),
          el("div", { class: "preview" }, preview),
        ),
        unread ? el("span", { class: "unread", title: `${unread} unread` }, String(unread)) : null,
      );
    }),
  );
}

function renderHeader() {
  const view = state.view;
  if (!view) return;
  const detail = state.details.get(view.id);
  $("#conv-title").textContent = titleOf(view.id);
  const members = detail?.members || [];
  let sub = "";
  if (detail?.kind === "direct") {
    const other = otherMember(view.id);
    sub = other && state.online.has(other.user_id) ? "online" : "offline";
  } else if (detail) {
    const here = members.filter((m) => state.online.has(m.user_id)).length;
    sub = `${members.length} member${members.length === 1 ? "" : "s"} · ${here} online`;
  }
  $("#conv-sub").textContent = sub;
  $("#roster").replaceChildren(
    ...(detail?.kind === "group" ? members : []).map((m) =>
      el("li", { class: state.online.has(m.user_id) ? "online" : "" }, m.user_id === state.me.id ? "you" : m.display_name),
    ),
  );
}

function renderMessages({ toBottom = false, keepPlace = false } = {}) {
  const view = state.view;
  if (!view) return;
  const scroller = $("#scroller");
  const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const group = state.details.get(view.id)?.kind === "group";
  const rows = [];
  let previousSender = null;
  let previousDay = null;
  for (const seq of [...view.messages.keys()].sort((a, b) => a - b)) {
    const m = view.messages.get(seq);
    const day = new Date(m.created_at).toDateString();
    if (day !== previousDay) {
      rows.push(el("li", { class: "day" }, new Date(m.created_at).toLocaleDateString([], { dateStyle: "medium" })));
      previousDay = day;
      previousSender = null;
    }
    const mine = m.sender_id === state.me.id;
    const showName = group && !mine && previousSender !== m.sender_id;
    previousSender = m.sender_id;
    const meta = `${clock(m.created_at)}${m.edited_at && !m.deleted ? " · edited" : ""}`;
    rows.push(
      el(
        "li",
        { class: [mine && "mine", m.deleted && "deleted"].filter(Boolean).join(" "), dataset: { seq: String(m.seq) } },
        showName ? el("span", { class: "who" }, nameOf(m.sender_id)) : null,
        el("div", { class: "bubble" }, m.deleted ? "message deleted" : m.body),
        el("span", { class: "meta" }, meta),
      ),
    );
  }
  for (const [clientId, p] of state.pending) {
    if (p.conversation_id !== view.id || (p.seq !== null && view.messages.has(p.seq))) continue;
    rows.push(
      el(
        "li",
        { class: `mine ${p.failed ? "failed" : "pending"}`, dataset: { clientId } },
        el("div", { class: "bubble" }, p.body),
        el("span", { class: "meta" }, p.failed ? `not sent: ${p.failed}` : p.seq ? "sent" : "sending…"),
      ),
    );
  }
  $("#messages").replaceChildren(...rows);
  $("#older").hidden = !view.hasMore;
  if (keepPlace) scroller.scrollTop = scroller.scrollHeight - fromBottom;
  else if (toBottom || nearBottom) scroller.scrollTop = scroller.scrollHeight;
}

function renderTyping() {
  const box = $("#typing");
  const who = state.view ? state.typing.get(state.view.id) : null;
  const now = Date.now();
  const names = who ? [...who].filter(([, until]) => until > now).map(([userId]) => nameOf(userId)) : [];
  box.textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

// ---------------------------------------------------------------- new conversation dialog

const picker = { mode: "direct", chosen: new Map(), searchTimer: null };

function openPicker(mode) {
  picker.mode = mode;
  picker.chosen.clear();
  const dialog = $("#new-dialog");
  dialog.classList.toggle("direct", mode === "direct");
  $("#new-title").textContent = mode === "direct" ? "New direct conversation" : "New group";
  $("#new-form").reset();
  $("#new-error").textContent = "";
  $("#people").replaceChildren();
  renderChosen();
  dialog.showModal();
  (mode === "direct" ? $("#people-q") : $("#new-form").elements.title).focus();
  searchPeople("");
}

async function searchPeople(prefix) {
  try {
    const page = await call("GET", `/api/users/?${query({ q: prefix, limit: 20 })}`);
    const people = page.items.filter((u) => u.id !== state.me.id);
    $("#people").replaceChildren(
      ...people.map((user) =>
        el(
          "li",
          { dataset: { id: user.id, username: user.username }, onclick: () => pickPerson(user) },
          el("div", { class: `avatar${state.online.has(user.id) ? " online" : ""}` }, initial(user.display_name)),
          el("div", {}, el("div", {}, user.display_name), el("small", {}, `@${user.username}`)),
        ),
      ),
    );
    if (people.length === 0) $("#people").append(el("li", { class: "muted" }, "Nobody by that name"));
  } catch (error) {
    $("#new-error").textContent = error.message;
  }
}

async function pickPerson(user) {
  state.users.set(user.id, user);
  if (picker.mode === "group") {
    picker.chosen.set(user.id, user);
    renderChosen();
    return;
  }
  try {
    await startConversation({ kind: "direct", members: [user.id] });
  } catch (error) {
    $("#new-error").textContent = error.message;
  }
}

function renderChosen() {
  $("#chosen").replaceChildren(
    ...[...picker.chosen.values()].map((user) =>
      el(
        "span",
        { class: "chip" },
        user.display_name,
        el("button", { type: "button", title: "Remove", onclick: () => (picker.chosen.delete(user.id), renderChosen()) }, "×"),
      ),
    ),
  );
}

async function createGroup(event) {
  event.preventDefault();
  if (picker.mode !== "group") return;
  const title = $("#new-form").elements.title.value.trim();
  if (!title) {
    $("#new-error").textContent = "Give the group a title.";
    return;
  }
  try {
    await startConversation({ kind: "group", title, members: [...picker.chosen.keys()] });
  } catch (error) {
    $("#new-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------- sign in and out

let authMode = "login";

function showAuth(message) {
  $("#chat").hidden = true;
  $("#auth").hidden = false;
  $("#auth-error").textContent = message || "";
  $("#auth-form").elements.username.focus();
}

function setAuthMode(mode) {
  authMode = mode;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.mode === mode);
  document.querySelector(".register-only").hidden = mode !== "register";
  $("#auth-submit").textContent = mode === "register" ? "Create account" : "Log in";
  $("#auth-form").elements.password.autocomplete = mode === "register" ? "new-password" : "current-password";
  $("#auth-error").textContent = "";
}

async function submitAuth(event) {
  event.preventDefault();
  const form = event.target.elements;
  const username = form.username.value.trim();
  const password = form.password.value;
  const button = $("#auth-submit");
  button.disabled = true;
  try {
    if (authMode === "register") {
      const displayName = form.display_name.value.trim();
      await call("POST", "/api/register/", { username, password, display_name: displayName || undefined }, { auth: false });
    }
    saveTokens(await call("POST", "/api/login/", { username, password }, { auth: false }));
    form.password.value = "";
    startChat();
  } catch (error) {
    const field = error.problem?.field ? `${error.problem.field}: ` : "";
    $("#auth-error").textContent = error.problem?.field && error.problem?.errors ? `${field}${error.problem.errors[0].message}` : error.message;
  } finally {
    button.disabled = false;
  }
}

function startChat() {
  state.me = tokens.user;
  $("#auth").hidden = true;
  $("#chat").hidden = false;
  $("#me-name").textContent = state.me.display_name;
  $("#me-avatar").textContent = initial(state.me.display_name);
  live.stopped = false;
  live.connectedOnce = false;
  connectLive();
}

function signOut(message) {
  live.stopped = true;
  clearTimeout(live.timer);
  live.timer = null;
  const ws = live.ws;
  live.ws = null;
  if (ws) ws.close(1000, "signed out");
  saveTokens(null);
  Object.assign(state, { me: null, view: null });
  for (const key of ["conversations", "details", "users", "lastSeq", "online", "typing", "pending"]) state[key].clear();
  closeConversation();
  showAuth(message);
}

async function logOut() {
  try {
    await call("POST", "/api/logout/");
  } catch {
    // signed out here either way
  }
  signOut();
}

// ---------------------------------------------------------------- wiring

function wire() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => setAuthMode(tab.dataset.mode));
  $("#auth-form").addEventListener("submit", submitAuth);
  $("#logout").addEventListener("click", logOut);
  $("#new-direct").addEventListener("click", () => openPicker("direct"));
  $("#new-group").addEventListener("click", () => openPicker("group"));
  $("#new-cancel").addEventListener("click", () => $("#new-dialog").close());
  $("#new-form").addEventListener("submit", createGroup);
  $("#people-q").addEventListener("input", (event) => {
    clearTimeout(picker.searchTimer);
    picker.searchTimer = setTimeout(() => searchPeople(event.target.value.trim()), 200);
  });
  $("#older").addEventListener("click", loadOlder);
  $("#back").addEventListener("click", closeConversation);
  const draft = $("#draft");
  draft.addEventListener("input", () => {
    draft.style.height = "auto";
    draft.style.height = `${draft.scrollHeight}px`;
    if (draft.value.trim()) typed();
  });
  draft.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = draft.value.trim();
    if (!body || !state.view) return;
    sendMessage(body);
    draft.value = "";
    draft.style.height = "auto";
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.view) markRead(state.view.id);
  });
  window.addEventListener("online", () => {
    if (!live.stopped && !live.ws) connectLive(); // the network is back: do not wait for the backoff
  });
}

wire();
if (tokens) startChat();
else showAuth();
