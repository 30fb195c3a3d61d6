/* The playground page: draws the channel the server renders, sends commands and clicks.
   Plain JavaScript, no build step. The server turns Block Kit into HTML; this script places
   messages (threads under their parent), keeps typed input across updates, and long-polls. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    users: [], channels: [], tour: [],
    user: localStorage.getItem("pg-user") || "U0ALICE",
    channel: localStorage.getItem("pg-channel") || "C0STAGING",
    version: null, poll: null, seen: {}, counts: {}, done: new Set(),
  };
  const rows = new Map(); // message id -> {el, html}

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const userById = (id) => state.users.find((u) => u.id === id);
  const channelById = (id) => state.channels.find((c) => c.id === id);

  function avatar(author, small) {
    const user = userById(author);
    const cls = "avatar" + (small ? " small" : "");
    if (user) return el("span", { class: cls, style: `background:${user.color}`, text: user.name[0].toUpperCase(), "aria-hidden": "true" });
    if (author === "Slackbot") return el("span", { class: cls + " slackbot", text: "S", "aria-hidden": "true" });
    return el("span", { class: cls + " bot", text: "🚀", "aria-hidden": "true" });
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function slackDate(node) {
    const stamp = Number(node.dataset.ts);
    if (!stamp) return;
    const date = new Date(stamp * 1000);
    const today = new Date();
    const sameDay = (a, b) => a.toDateString() === b.toDateString();
    const yesterday = new Date(today.getTime() - 86400000);
    const pretty = sameDay(date, today) ? "today" : sameDay(date, yesterday) ? "yesterday"
      : date.toLocaleDateString([], { month: "short", day: "numeric" });
    const parts = {
      date_short_pretty: pretty, date_pretty: pretty, date_long_pretty: pretty,
      date_num: date.toISOString().slice(0, 10),
      date_short: date.toLocaleDateString([], { month: "short", day: "numeric", year: "numeric" }),
      date: date.toLocaleDateString([], { month: "long", day: "numeric", year: "numeric" }),
      date_long: date.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
      time: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      time_secs: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    };
    node.textContent = (node.dataset.format || "{date_short_pretty}").replace(/\{(\w+)\}/g, (m, k) => parts[k] ?? m);
    node.title = date.toString();
  }

  // -- sidebar, switcher, tour -----------------------------------------------------------------

  function drawChannels() {
    const list = $("channel-list");
    list.replaceChildren();
    for (const channel of state.channels) {
      const unread = (state.counts[channel.id] || 0) - (state.seen[channel.id] || 0);
      const button = el("button", {
        type: "button", "data-channel": channel.id,
        "aria-current": String(channel.id === state.channel),
        onclick: () => { selectChannel(channel.id); closeMenus(); },
      }, el("span", { class: "hash", text: "#" }), el("span", { class: unread > 0 && channel.id !== state.channel ? "unread" : "", text: channel.name }));
      if (unread > 0 && channel.id !== state.channel) button.append(el("span", { class: "badge", text: String(unread) }));
      list.append(el("li", {}, button));
    }
  }

  function drawUsers() {
    const list = $("user-list");
    const switcher = $("switcher");
    list.replaceChildren();
    switcher.replaceChildren();
    for (const user of state.users) {
      const pressed = String(user.id === state.user);
      list.append(el("li", {}, el("button", {
        type: "button", "aria-pressed": pressed, "data-user": user.id, title: user.role,
        onclick: () => { selectUser(user.id); closeMenus(); },
      }, avatar(user.id, true), el("span", {}, el("span", { text: user.name }), el("span", { class: "role", text: user.role })))));
      switcher.append(el("button", {
        type: "button", "aria-pressed": pressed, "data-user": user.id, title: `Act as ${user.name}: ${user.role}`,
        onclick: () => selectUser(user.id),
      }, avatar(user.id, true), el("span", { class: "switch-name", text: user.name })));
    }
    $("composer-user").textContent = userById(state.user)?.name || "";
  }

  function drawTour() {
    const list = $("tour-steps");
    list.replaceChildren();
    state.tour.forEach((step, index) => {
      const who = userById(step.user)?.name || step.user;
      const where = channelById(step.channel)?.name || step.channel;
      const text = el("div", { class: "step-text" });
      text.innerHTML = inlineCode(step.text);
      list.append(el("li", {}, el("button", {
        type: "button", class: "tour-step" + (state.done.has(index) ? " done" : ""), "data-step": String(index),
        onclick: () => runStep(index),
      }, el("div", { class: "step-title", text: step.title }), text, step.command ? el("code", { text: step.command }) : null,
        el("div", { class: "step-who", text: `as ${who} in #${where}` }))));
    });
  }

  function inlineCode(text) {
    const escaped = text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
    return escaped.replace(/`([^`]+)`/g, "<code>$1</code>");
  }

  function drawHeader() {
    const channel = channelById(state.channel);
    if (!channel) return;
    $("channel-name").textContent = `# ${channel.name}`;
    $("channel-topic").textContent = `${channel.topic} · namespace ${channel.namespace}`;
    $("composer-input").placeholder = `Message #${channel.name}  (try /rollout help)`;
    const intro = $("channel-intro");
    intro.replaceChildren(
      el("h2", { text: `# ${channel.name}` }),
      el("div", { text: `Commands here use the namespace “${channel.namespace}” unless they say -n. ${channel.topic}.` }),
    );
    document.title = `#${channel.name} · rollout-bot playground`;
  }

  function selectChannel(id) {
    if (!channelById(id) || id === state.channel) return;
    state.channel = id;
    localStorage.setItem("pg-channel", id);
    resetMessages();
  }

  function selectUser(id) {
    if (!userById(id) || id === state.user) return;
    state.user = id;
    localStorage.setItem("pg-user", id);
    state.seenReset = true; // another person: what is already there counts as read
    resetMessages();
  }

  function resetMessages() {
    for (const { el: node } of rows.values()) node.remove();
    rows.clear();
    state.version = null;
    drawHeader(); drawChannels(); drawUsers();
    restartPoll();
  }

  function closeMenus() { $("app").classList.remove("menu-open", "tour-open"); }

  // -- messages -----------------------------------------------------------------------------------

  function makeRow(item) {
    const author = userById(item.author);
    const name = author ? author.name : item.author;
    const head = el("div", { class: "msg-head" }, el("span", { class: "msg-author", text: name }));
    if (!author) head.append(el("span", { class: "app-badge", text: "APP" }));
    head.append(el("span", { class: "msg-time", text: clock(item.time) }));
    const main = el("div", { class: "msg-main" });
    if (item.ephemeral) {
      main.append(el("div", { class: "ephemeral-note" }, el("span", { text: "👁 Only visible to you" })));
    }
    main.append(head, el("div", { class: "msg-body" }));
    const row = el("div", {
      class: "msg" + (item.ephemeral ? " ephemeral" : "") + (item.kind === "command" ? " command" : ""),
      "data-id": item.id, "data-ts": item.ts || "", "data-ephemeral": String(item.ephemeral),
    }, avatar(item.author), main);
    if (item.kind === "command") row.title = `${name} ran a slash command`;
    return row;
  }

  function setBody(row, html) {
    const body = row.querySelector(":scope > .msg-main > .msg-body");
    // Keep what the user typed (a reject reason) when the message is redrawn.
    const typed = {};
    body.querySelectorAll(".text-input").forEach((input) => {
      typed[input.dataset.blockId + "/" + input.dataset.actionId] = [input.value, input === document.activeElement];
    });
    body.innerHTML = html;
    body.querySelectorAll("time.slack-date").forEach(slackDate);
    body.querySelectorAll(".text-input").forEach((input) => {
      const kept = typed[input.dataset.blockId + "/" + input.dataset.actionId];
      if (kept) { input.value = kept[0]; if (kept[1]) input.focus(); }
    });
  }

  function threadOf(parentRow) {
    const main = parentRow.querySelector(":scope > .msg-main");
    let thread = main.querySelector(":scope > .thread");
    if (!thread) {
      const summary = el("button", { type: "button", class: "thread-summary" });
      summary.addEventListener("click", () => thread.classList.toggle("collapsed"));
      thread = el("div", { class: "thread" }, summary, el("div", { class: "thread-replies" }));
      main.append(thread);
    }
    return thread;
  }

  function apply(data) {
    const list = $("messages");
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    const wanted = new Set(data.items.map((i) => i.id));
    for (const [id, row] of rows) if (!wanted.has(id)) { row.el.remove(); rows.delete(id); }
    const last = new Map();
    let changed = false;
    for (const item of data.items) {
      let row = rows.get(item.id);
      if (!row) { row = { el: makeRow(item), html: null }; rows.set(item.id, row); changed = true; }
      if (row.html !== item.html) { setBody(row.el, item.html); row.html = item.html; changed = true; }
      const edited = row.el.querySelector(".msg-edited");
      if (item.edited && !edited) row.el.querySelector(".msg-head").append(el("span", { class: "msg-edited", text: "(edited)" }));
      const parentRow = item.parent && rows.get(item.parent);
      const container = parentRow ? threadOf(parentRow.el).querySelector(".thread-replies") : list;
      const previous = last.get(container) || (container === list ? $("channel-intro") : null);
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (row.el.parentNode !== container || expected !== row.el) {
        if (previous) previous.after(row.el); else container.prepend(row.el);
      }
      last.set(container, row.el);
      if (item.replies) {
        const summary = threadOf(row.el).querySelector(".thread-summary");
        const label = `${item.replies} ${item.replies === 1 ? "reply" : "replies"}`;
        if (summary.textContent !== label) {
          summary.replaceChildren(avatar("rollout-bot", true), el("span", { text: label }));
        }
      }
    }
    state.counts = data.counts || {};
    if (state.seenReset) { state.seen = { ...state.counts }; state.seenReset = false; }
    state.seen[state.channel] = state.counts[state.channel] || 0;
    drawChannels();
    if (changed && nearBottom) list.scrollTop = list.scrollHeight;
  }

  async function poll(controller) {
    while (!controller.signal.aborted) {
      const query = new URLSearchParams({ channel: state.channel, user: state.user });
      if (state.version !== null) query.set("since", String(state.version));
      try {
        const response = await fetch(`/api/state?${query}`, {
          signal: controller.signal, headers: { "X-Playground-Token": token },
        });
        if (!response.ok) throw new Error(String(response.status));
        const data = await response.json();
        if (controller.signal.aborted) return;
        if (data.version !== state.version) {
          state.version = data.version;
          apply(data);
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  function restartPoll() {
    if (state.poll) state.poll.abort();
    state.poll = new AbortController();
    poll(state.poll);
  }

  // -- sending --------------------------------------------------------------------------------------

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Playground-Token": token },
      body: JSON.stringify(body),
    });
    return response.json().catch(() => ({}));
  }

  async function sendCommand(text) {
    text = text.trim();
    if (!text) return;
    if (!text.startsWith("/")) text = "/rollout " + text;
    await post("/api/command", { user: state.user, channel: state.channel, text });
  }

  function runStep(index) {
    const step = state.tour[index];
    state.done.add(index);
    localStorage.setItem("pg-done", JSON.stringify({ run: state.run, steps: [...state.done] }));
    drawTour();
    closeMenus();
    const switched = step.user !== state.user || step.channel !== state.channel;
    state.user = step.user; state.channel = step.channel;
    localStorage.setItem("pg-user", step.user); localStorage.setItem("pg-channel", step.channel);
    if (switched) { state.seenReset = true; resetMessages(); }
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
    if (step.command) sendCommand(step.command);
    else $("composer-input").focus();
  }

  function collectState(body) {
    const values = {};
    body.querySelectorAll(".text-input").forEach((input) => {
      const block = input.dataset.blockId, action = input.dataset.actionId;
      values[block] = values[block] || {};
      values[block][action] = { type: "plain_text_input", value: input.value === "" ? null : input.value };
    });
    return values;
  }

  function confirmDialog(spec) {
    return new Promise((resolve) => {
      const backdrop = $("confirm"), ok = $("confirm-ok"), deny = $("confirm-deny");
      $("confirm-title").textContent = spec.title;
      $("confirm-text").innerHTML = spec.text_html;
      ok.textContent = spec.confirm;
      deny.textContent = spec.deny;
      ok.className = "btn " + (spec.style === "danger" ? "btn-danger" : "btn-primary");
      backdrop.hidden = false;
      ok.focus();
      const done = (answer) => {
        backdrop.hidden = true;
        ok.onclick = deny.onclick = backdrop.onclick = document.onkeydown = null;
        resolve(answer);
      };
      ok.onclick = () => done(true);
      deny.onclick = () => done(false);
      backdrop.onclick = (event) => { if (event.target === backdrop) done(false); };
      document.onkeydown = (event) => { if (event.key === "Escape") done(false); };
    });
  }

  async function click(button) {
    const row = button.closest(".msg");
    const body = button.closest(".msg-body");
    if (button.dataset.confirm) {
      const spec = JSON.parse(button.dataset.confirm);
      if (!(await confirmDialog(spec))) return;
    }
    button.classList.add("busy");
    try {
      await post("/api/action", {
        user: state.user, channel: state.channel, ts: row.dataset.ts,
        action_id: button.dataset.actionId, block_id: button.dataset.blockId,
        value: button.dataset.value, state: collectState(body),
      });
    } finally {
      button.classList.remove("busy");
    }
  }

  // -- wiring ---------------------------------------------------------------------------------------

  function wire() {
    const input = $("composer-input");
    const history = [];
    let back = 0;
    const grow = () => { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 160) + "px"; };
    input.addEventListener("input", grow);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("composer").requestSubmit();
      } else if (event.key === "ArrowUp" && !input.value && history.length) {
        back = Math.min(back + 1, history.length);
        input.value = history[history.length - back];
        event.preventDefault();
      }
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      history.push(text); back = 0;
      input.value = ""; grow();
      sendCommand(text);
    });
    $("messages").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action-id]");
      if (button) { event.preventDefault(); click(button); }
    });
    $("tour-toggle").addEventListener("click", () => $("app").classList.toggle("tour-open"));
    $("tour-close").addEventListener("click", closeMenus);
    $("menu-button").addEventListener("click", (event) => {
      event.stopPropagation();
      $("app").classList.toggle("menu-open");
    });
    $("tour-toggle").addEventListener("click", (event) => event.stopPropagation());
    // On a narrow screen the drawers close when you touch the channel behind them.
    document.querySelector(".channel").addEventListener("click", () => {
      $("app").classList.remove("menu-open", "tour-open");
    });
  }

  // This run's key: the address the playground printed carries it after `#token=` (a fragment
  // never reaches a server log); the page keeps it for reloads of this tab.
  function runToken() {
    const fromAddress = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromAddress) {
      sessionStorage.setItem("pg-token", fromAddress);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return fromAddress || sessionStorage.getItem("pg-token") || "";
  }
  const token = runToken();

  async function start() {
    wire();
    const reply = await fetch("/api/bootstrap", { headers: { "X-Playground-Token": token } });
    if (reply.status === 401) {
      sessionStorage.removeItem("pg-token");
      $("channel-intro").textContent =
        "Open the address the playground printed in its terminal: it carries this run's key.";
      return;
    }
    const boot = await reply.json();
    Object.assign(state, { users: boot.users, channels: boot.channels, tour: boot.tour });
    if (!userById(state.user)) state.user = boot.users[0].id;
    if (!channelById(state.channel)) state.channel = boot.channels[0].id;
    state.run = boot.run;
    try {
      const saved = JSON.parse(localStorage.getItem("pg-done") || "{}");
      state.done = new Set(saved.run === boot.run ? saved.steps : []);
    } catch (e) { state.done = new Set(); }
    drawHeader(); drawChannels(); drawUsers(); drawTour();
    restartPoll();
    $("composer-input").focus();
  }

  start();
})();
