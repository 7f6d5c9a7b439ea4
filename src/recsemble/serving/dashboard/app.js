// recsemble dashboard: plain JavaScript over the server's own API (no build step, no CDN).
// Every API error is shown in the page's alert bar; nothing is logged to the console, so a
// console error always means a bug.
"use strict";

(() => {
  const { KEY_STORAGE, api, el, fmt, uuid, when } = window.recsembleApi;
  const POLL_MS = 3000;
  const LIST_SIZE = 10;
  const HISTORY_SIZE = 20;
  const state = {
    user: null,
    recIds: [],
    serving: null,
    clickType: "click", // the served model's lightest event type, from /stats
    pollPaused: false,
    // What raised the alert shown: "poll" (the live panel's /stats), "load" (the page's
    // start, e.g. no model served yet) or an action of the user. The first two are taken
    // down when what failed works again; the user's own stays until dismissed.
    errorSource: null,
    memberColour: new Map(),
    titles: new Map(),
  };
  const $ = (id) => document.getElementById(id);

  // -- small helpers ----------------------------------------------------------------------
  function colourOf(label) {
    if (!state.memberColour.has(label)) state.memberColour.set(label, state.memberColour.size % 8);
    return `c${state.memberColour.get(label)}`;
  }

  function remember(items) {
    for (const item of items) if (item.title) state.titles.set(item.item_id, item.title);
  }

  // -- the alert bar ----------------------------------------------------------------------
  function showError(err, source = "action") {
    state.errorSource = source;
    $("error-text").textContent = err && err.message ? err.message : String(err);
    $("error").hidden = false;
  }

  function clearError() {
    state.errorSource = null;
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  // Run an action (the user's, or the page's own load): its error is shown, never dropped.
  async function attempt(action, source = "action") {
    try {
      await action();
    } catch (err) {
      showError(err, source);
    }
  }

  // -- users ------------------------------------------------------------------------------
  async function loadUsers() {
    const prefix = $("user-search").value.trim();
    const data = await api("GET", `/users?limit=50&prefix=${encodeURIComponent(prefix)}`);
    // The search changed meanwhile: a late answer to the earlier one must not replace its.
    if ($("user-search").value.trim() !== prefix) return;
    const list = $("user-list");
    list.replaceChildren(...data.users.map((user) => el("li", {},
      el("button", { type: "button", className: "user-btn", data: { userId: user.user_id } },
        el("span", { text: user.user_id }),
        el("span", { className: "muted", text: ` ${user.history_length} events` })))));
    const shown = data.users.length < data.total ? `, first ${data.users.length} shown` : "";
    $("user-count").textContent = `${data.total} users${shown}`;
  }

  async function selectUser(userId) {
    state.user = userId;
    state.recIds = [];
    history.replaceState(null, "", `#user=${encodeURIComponent(userId)}`);
    $("user-empty").hidden = true;
    $("user-view").hidden = false;
    $("user-title").textContent = userId;
    $("recs-change").hidden = true;
    $("similar-panel").hidden = true;
    for (const button of document.querySelectorAll(".user-btn")) {
      button.classList.toggle("selected", button.dataset.userId === userId);
    }
    await refreshUser(null, null);
  }

  // Recommendations, member lists and history of the selected user, all at once; `before`
  // (the previous list) marks what changed after an event on `clicked`.
  async function refreshUser(before, clicked) {
    const asked = state.user;
    const user = encodeURIComponent(asked);
    const [recs, members, events] = await Promise.allSettled([
      api("GET", `/users/${user}/recommendations?k=${LIST_SIZE}&explain=true`),
      api("GET", `/users/${user}/members?k=${LIST_SIZE}`),
      api("GET", `/users/${user}/history?limit=${HISTORY_SIZE}`),
    ]);
    // Another user was picked meanwhile: these answers, if late, must not replace theirs.
    if (state.user !== asked) return;
    if (events.status === "fulfilled") renderHistory(events.value);
    if (recs.status === "fulfilled") renderRecs(recs.value, before, clicked);
    if (members.status === "fulfilled") renderMembers(members.value);
    const failed = [recs, members, events].find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  // -- recommendations --------------------------------------------------------------------
  function contributionBars(members) {
    const entries = Object.entries(members).sort((a, b) => b[1] - a[1]);
    const largest = Math.max(1e-12, ...entries.map(([, v]) => Math.abs(v)));
    return el("div", { className: "contribs" }, ...entries.map(([label, value]) => {
      const bar = el("span", { className: `bar ${colourOf(label)}${value < 0 ? " negative" : ""}` });
      bar.style.width = `${Math.round((100 * Math.abs(value)) / largest)}%`;
      return el("div", { className: "contrib", data: { member: label } },
        el("span", { className: "member", text: label }),
        el("span", { className: "track" }, bar),
        el("span", { className: "value", text: fmt(value) }));
    }));
  }

  function becauseLine(because) {
    if (!because.length) return null;
    const parts = because.map((b) => {
      const title = state.titles.get(b.item_id);
      return `${b.item_id}${title ? ` (${title})` : ""} ×${fmt(b.weight, 2)}`;
    });
    return el("p", { className: "because", text: `because: ${parts.join(", ")}` });
  }

  function itemActions(itemId, clickable) {
    return el("span", { className: "actions" },
      clickable ? el("button", { type: "button", className: "click-btn", data: { itemId },
        text: "click" }) : null,
      el("button", { type: "button", className: "similar-btn", data: { itemId }, text: "similar" }));
  }

  function recCard(item, rank, isNew) {
    const e = item.explanation;
    return el("li", { className: `card${isNew ? " new" : ""}`, data: { itemId: item.item_id } },
      el("div", { className: "card-head" },
        el("span", { className: "rank", text: `${rank}.` }),
        el("code", { className: "item-id", text: item.item_id }),
        el("span", { className: "title", text: item.title || "" }),
        isNew ? el("span", { className: "badge", text: "new" }) : null,
        el("span", { className: "score muted", text: `score ${fmt(item.score)}` }),
        itemActions(item.item_id, true)),
      e ? el("p", { className: "expl-text", text: e.text }) : null,
      e && Object.keys(e.members).length ? contributionBars(e.members) : null,
      e ? becauseLine(e.because) : null);
  }

  function renderRecs(answer, before, clicked) {
    remember(answer.items);
    const ids = answer.items.map((item) => item.item_id);
    const previous = before ? new Set(before) : null;
    $("recs").replaceChildren(...answer.items.map((item, i) =>
      recCard(item, i + 1, previous !== null && !previous.has(item.item_id))));
    $("recs-meta").textContent = `· model ${answer.model_version} · source ${answer.source}`;
    if (previous !== null) {
      const added = ids.filter((id) => !previous.has(id)).length;
      const gone = before.filter((id) => !ids.includes(id)).length;
      $("recs-change").textContent = added || gone
        ? `After the click on ${clicked}: the list changed, ${added} new, ${gone} gone.`
        : `After the click on ${clicked}: the list did not change.`;
      $("recs-change").hidden = false;
    }
    state.recIds = ids;
  }

  // -- members, history, similar ----------------------------------------------------------
  function renderMembers(data) {
    const inEnsemble = new Set(state.recIds);
    // A lone generator is its own one member: the page must not call it an ensemble.
    const kind = data.ensemble ? "ensemble" : `${data.members.map((m) => m.label).join(", ")} alone`;
    $("recs-kind").textContent = `(${kind}, explained)`;
    $("members-heading").replaceChildren(data.ensemble ? "Each member alone " : "The model alone ",
      el("span", { className: "muted", text: data.ensemble
        ? "(same history; highlighted: also in the ensemble's list)"
        : "(same history; highlighted: also in the list above)" }));
    $("members").replaceChildren(...data.members.map((member) => el("div",
      { className: "member-col", data: { member: member.label } },
      el("h4", { className: colourOf(member.label) },
        el("span", { className: "swatch" }), `${member.label} `,
        member.generator !== member.label
          ? el("span", { className: "muted", text: member.generator }) : null),
      el("ol", { className: "compact" }, ...member.items.map((item) => el("li",
        { className: inEnsemble.has(item.item_id) ? "in-ensemble" : "", data: { itemId: item.item_id } },
        el("code", { text: item.item_id }),
        el("span", { className: "title", text: ` ${item.title || ""} ` }),
        el("span", { className: "muted", text: fmt(item.score) })))))));
  }

  function renderHistory(data) {
    remember(data.events);
    $("history-count").textContent = `(latest ${data.events.length} of ${data.total})`;
    $("history").tBodies[0].replaceChildren(...data.events.map((event) => el("tr",
      { className: event.live ? "live" : "", data: { itemId: event.item_id } },
      el("td", { text: when(event.timestamp) }),
      el("td", {}, el("code", { text: event.item_id })),
      el("td", { text: event.title || "" }),
      el("td", { className: "event-type", text: event.type || "—" },
        event.live ? el("span", { className: "badge", text: "live" }) : null))));
  }

  async function showSimilar(itemId) {
    const data = await api("GET", `/items/${encodeURIComponent(itemId)}/similar?k=${LIST_SIZE}`);
    remember(data.items);
    const title = state.titles.get(itemId);
    $("similar-title").textContent = `${itemId}${title ? ` (${title})` : ""}`;
    $("similar-source").textContent = `· from the ${data.source}`;
    $("similar").replaceChildren(...data.items.map((item) => el("li",
      { data: { itemId: item.item_id } },
      el("code", { text: item.item_id }),
      el("span", { className: "title", text: ` ${item.title || ""} ` }),
      el("span", { className: "muted", text: fmt(item.score) }),
      itemActions(item.item_id, state.user !== null))));
    $("similar-panel").hidden = false;
    $("similar-panel").scrollIntoView({ block: "nearest" });
  }

  async function clickItem(itemId, button) {
    if (state.user === null) return;
    button.disabled = true;
    try {
      const before = state.recIds.slice();
      const event = { event_id: uuid(), user_id: state.user, item_id: itemId, type: state.clickType };
      await api("POST", "/events", { events: [event] });
      await Promise.all([refreshUser(before, itemId), loadStats()]);
    } finally {
      button.disabled = false;
    }
  }

  // -- model panel ------------------------------------------------------------------------
  function versionCard(version) {
    const figures = Object.entries(version.metrics).map(([name, value]) =>
      el("span", { className: "figure" }, `${name} `, el("strong", { text: fmt(value) })));
    const marks = [version.serving ? "serving" : null, version.current ? "published" : null]
      .filter(Boolean).join(", ");
    return el("div", {
      className: `version${version.serving ? " serving" : ""}`, data: { version: version.version } },
      el("div", {}, el("code", { className: "version-name", text: version.version }),
        marks ? el("span", { className: "badge", text: marks }) : null),
      el("div", { className: "muted", text: `created ${version.created_at || "?"}` }),
      figures.length
        ? el("div", { className: "figures" },
          version.evaluated_as ? el("span", { className: "muted", text: `${version.evaluated_as}: ` }) : null,
          ...figures)
        : el("div", { className: "muted", text: "no evaluation stored (serve --results results.json)" }),
      version.decision ? el("p", { className: "decision", text: version.decision }) : null,
      el("button", { type: "button", className: "publish-btn", data: { version: version.version },
        disabled: version.serving, text: version.serving ? "serving" : "Publish" }));
  }

  async function loadModels() {
    const data = await api("GET", "/models");
    state.serving = data.serving;
    $("serving-version").textContent = data.serving || "none";
    $("current-version").textContent = data.current || "none";
    $("header-version").textContent = data.serving || "none";
    $("versions").replaceChildren(...data.versions.slice().reverse().map(versionCard));
  }

  async function changeVersion(path, button) {
    button.disabled = true;
    try {
      const data = await api("POST", path);
      $("serving-version").textContent = data.serving || "none";
      await loadModels();
      if (state.user !== null) await refreshUser(null, null);
    } finally {
      button.disabled = false;
    }
  }

  function routeRows(stats) {
    const byRoute = new Map();
    for (const r of stats.requests) byRoute.set(r.route, (byRoute.get(r.route) || 0) + r.count);
    const p95 = new Map(stats.latency_by_route.map((r) => [r.route, r.p95_ms]));
    return [...byRoute.entries()].sort((a, b) => b[1] - a[1]).map(([route, count]) =>
      el("tr", { data: { route } }, el("td", {}, el("code", { text: route })),
        el("td", { className: "count", text: String(count) }),
        el("td", { text: fmt(p95.get(route), 1) })));
  }

  async function loadStats() {
    const stats = await api("GET", "/stats");
    const l = stats.latency;
    $("requests-total").textContent = String(stats.requests_total);
    $("latency").textContent = `${fmt(l.p50_ms, 1)} / ${fmt(l.p95_ms, 1)} / ${fmt(l.p99_ms, 1)} ms`;
    $("latency").title = `over ${l.count} API requests (monitoring routes left out)`;
    $("events-accepted").textContent =
      `${stats.events.accepted} (${stats.events.duplicates} duplicates)`;
    $("live-users").textContent = String(stats.live_users);
    state.clickType = stats.click_event_type;
    $("uptime").textContent = `${Math.round(stats.uptime_s)} s`;
    $("report-link").hidden = !stats.report_available;
    $("route-stats").tBodies[0].replaceChildren(...routeRows(stats));
    if (stats.serving !== state.serving) { // a first model, or published or rolled back elsewhere
      await loadModels();
      // The users and the user's list came from the version no longer served (or from none).
      await loadUsers();
      if (state.user !== null) await refreshUser(null, null);
      if (state.errorSource === "load") clearError();
    }
  }

  async function poll() {
    if (state.pollPaused) return;
    try {
      await loadStats();
      // The outage is over (a restarted server, the network back): its alert would say the
      // server does not answer beside figures that show it does.
      if (state.errorSource === "poll") clearError();
    } catch (err) {
      // A key problem does not fix itself: stop asking until a key is entered.
      if (err.status === 401 || err.status === 403) state.pollPaused = true;
      showError(err, "poll");
    }
  }

  // -- wiring -----------------------------------------------------------------------------
  async function loadAll() {
    const results = await Promise.allSettled([loadUsers(), loadModels(), loadStats()]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      if (failed.reason.status === 401 || failed.reason.status === 403) state.pollPaused = true;
      throw failed.reason;
    }
    if (state.user !== null) await refreshUser(null, null);
  }

  function onClick(event) {
    const button = event.target.closest("button");
    if (!button) return;
    const { itemId, userId, version } = button.dataset;
    if (button.classList.contains("user-btn")) attempt(() => selectUser(userId));
    else if (button.classList.contains("click-btn")) attempt(() => clickItem(itemId, button));
    else if (button.classList.contains("similar-btn")) attempt(() => showSimilar(itemId));
    else if (button.classList.contains("publish-btn")) {
      attempt(() => changeVersion(`/admin/models/${encodeURIComponent(version)}/publish`, button));
    } else if (button.id === "rollback") attempt(() => changeVersion("/admin/rollback", button));
    else if (button.id === "error-close") clearError();
  }

  function saveKey(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    $("key-status").textContent = key ? "key saved in this browser" : "no key";
    state.pollPaused = false;
    clearError();
    attempt(loadAll, "load");
  }

  function start() {
    $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
    $("key-status").textContent = $("api-key").value ? "key saved in this browser" : "";
    document.addEventListener("click", onClick);
    $("key-form").addEventListener("submit", saveKey);
    let typing = null;
    $("user-search").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => attempt(loadUsers), 250);
    });
    const wanted = new URLSearchParams(location.hash.slice(1)).get("user");
    attempt(async () => {
      await loadAll();
      if (wanted) await selectUser(wanted);
    }, "load");
    setInterval(poll, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
