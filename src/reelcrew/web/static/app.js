// reelcrew dashboard: plain JS over the API (no build step, no CDN). The session cookie authenticates;
// every change carries the page's CSRF token. Live updates come from the ledger's event stream (SSE).
"use strict";
const reelcrew = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const $ = (sel) => document.querySelector(sel);
  const esc = (text) => String(text ?? "").replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  async function api(method, path, body) {
    const options = {method, headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) { location.href = "/login"; throw new Error("logged out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
    return data;
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function listen(path, onEvent) {
    const source = new EventSource(path, {withCredentials: true});
    source.onmessage = (message) => onEvent(JSON.parse(message.data));
    return source;
  }

  const statusBadge = (status) => `<span class="status ${esc(status)}">${esc(status)}</span>`;

  // -- the list ------------------------------------------------------------------------------
  function index() {
    const list = $("#productions");
    async function refresh() {
      const data = await api("GET", "/api/productions?limit=100");
      if (!data.productions.length) { list.innerHTML = '<p class="hint">No productions yet.</p>'; return; }
      list.innerHTML = data.productions.map((p) => `
        <div class="row" data-id="${esc(p.id)}" data-status="${esc(p.status)}">
          <a href="/productions/${encodeURIComponent(p.id)}">${esc(p.topic)}</a>
          <span>${statusBadge(p.status)}</span>
          <progress max="1" value="${p.progress}" title="${Math.round(p.progress * 100)}%"></progress>
          <span class="hint">${esc(p.stage)} · ${p.clips_done}/${p.clips_total} clips · $${p.cost_usd.toFixed(2)}</span>
        </div>`).join("");
    }
    $("#new-batch").addEventListener("submit", async (event) => {
      event.preventDefault();
      const topics = $("#topics").value.split("\n").map((t) => t.trim()).filter(Boolean);
      const body = {topics, scenes: Number($("#scenes").value) || undefined, aspect_ratio: $("#aspect_ratio").value,
        language: $("#language").value || "auto", until: $("#until").value, mock: $("#mock").checked,
        hold: $("#hold").checked, auto_approve: $("#auto_approve").checked};
      if ($("#budget_usd").value !== "") body.budget_usd = Number($("#budget_usd").value);
      try {
        const answer = await api("POST", "/api/productions", body);
        $("#create-result").textContent = `created ${answer.productions.length} production(s)`;
        $("#topics").value = "";
        refresh();
      } catch (error) { $("#create-result").textContent = error.message; }
    });
    refresh();
    listen("/api/events", debounce(refresh, 150));
  }

  // -- one production ------------------------------------------------------------------------
  function production(pid) {
    const base = `/api/productions/${encodeURIComponent(pid)}`;
    const clipState = {};
    let finalKey = "", promptsKey = "", current = null;
    const promptNotes = {};  // "saved" or an error per prompt: kept when an event re-renders the cards

    function renderPrompts(p) {
      const prompts = p.prompts?.prompts || [];
      const editable = (index) => p.status === "awaiting_approval" ||
        ["filtered", "failed", "ambiguous"].includes(p.clips.find((c) => c.index === index)?.status);
      const key = JSON.stringify([p.status, prompts.map((x) => x.prompt), p.clips.map((c) => c.status)]);
      if (key === promptsKey) return;
      promptsKey = key;
      $("#prompts").innerHTML = prompts.map((x) => `
        <div class="prompt" data-index="${x.index}"><b>Prompt ${x.index}</b>
          <textarea rows="4" ${editable(x.index) ? "" : "readonly"}>${esc(x.prompt)}</textarea>
          ${editable(x.index) ? `<button class="save-prompt">Save prompt ${x.index}</button>` : ""}
          <span class="hint saved">${esc(promptNotes[x.index] || "")}</span></div>`).join("");
      const note = (index, text) => {  // the card may have been re-rendered while the request was out
        promptNotes[index] = text;
        const live = document.querySelector(`.prompt[data-index="${index}"] .saved`);
        if (live) live.textContent = text;
      };
      for (const button of document.querySelectorAll(".save-prompt")) {
        button.addEventListener("click", async () => {
          const card = button.closest(".prompt");
          const index = card.dataset.index;
          note(index, "");
          try {
            await api("PATCH", `${base}/prompts/${index}`, {prompt: card.querySelector("textarea").value});
            note(index, "saved");
          } catch (error) { note(index, error.message); }
        });
      }
    }

    function clipCard(c) {
      const player = c.file ? `<video controls muted preload="metadata" src="${base}/files/${c.file}?v=${c.retries}-${esc(c.operation || "")}"></video>` : "";
      const retry = ["filtered", "failed", "ambiguous", "paused"].includes(c.status) ? `
        <textarea rows="3" class="retry-prompt">${esc(c.prompt)}</textarea>
        <button class="retry" data-index="${c.index}">Retry clip ${c.index}</button>` : "";
      return `<div class="clip" data-index="${c.index}" data-status="${esc(c.status)}"><b>Clip ${c.index}</b>
        ${statusBadge(c.status)} ${c.cost_usd ? `$${c.cost_usd.toFixed(2)}` : ""}
        ${player}${c.error && c.status !== "done" ? `<p class="error">${esc(c.error)}</p>` : ""}
        ${c.fix ? `<p class="hint">fix: ${esc(c.fix)}</p>` : ""}${retry}</div>`;
    }

    function renderClips(p) {
      const grid = $("#clips");
      for (const c of p.clips) {
        const key = JSON.stringify([c.status, c.error, c.file, c.operation, c.retries]);
        if (clipState[c.index] === key) continue;
        clipState[c.index] = key;
        const holder = document.createElement("div");
        holder.innerHTML = clipCard(c);
        const card = holder.firstElementChild;
        const old = grid.querySelector(`.clip[data-index="${c.index}"]`);
        old ? old.replaceWith(card) : grid.appendChild(card);
        card.querySelector(".retry")?.addEventListener("click", async (event) => {
          event.target.disabled = true;
          try {
            await api("POST", `${base}/clips/${c.index}/retry`, {prompt: card.querySelector(".retry-prompt").value});
          } catch (error) { alert(error.message); event.target.disabled = false; }
        });
      }
    }

    function renderFinal(p) {
      const key = JSON.stringify([p.files, p.clips.map((c) => c.status)]);  // a new final, not a new status
      if (key === finalKey || !p.files.includes("final.mp4")) {
        $("#final-section").hidden = !p.files.includes("final.mp4");
        return;
      }
      finalKey = key;
      $("#final-section").hidden = false;
      const stamp = Date.now();
      $("#final").innerHTML = `<video id="final-video" controls muted playsinline preload="auto"
          src="${base}/files/final.mp4?v=${stamp}"></video>
        <p>${p.files.map((f) => `<a download href="${base}/files/${f}?v=${stamp}">${esc(f)}</a>`).join(" · ")}</p>`;
    }

    function renderText(p) {
      const script = p.script;
      $("#script").innerHTML = script ? `<h3>${esc(script.title)}</h3><p>${esc(script.hook)}</p><ol>${
        script.scenes.map((s) => `<li>${esc(s.narration)}</li>`).join("")}</ol>` : '<p class="hint">not written yet</p>';
      const seo = p.seo;
      $("#seo").innerHTML = seo ? `<h3>${esc(seo.title)}</h3><p>${esc(seo.description)}</p><p class="hint">${
        esc(seo.tags.join(", "))}</p><p>${esc(seo.hashtags.join(" "))}</p>${(seo.sources || []).length
        ? `<p class="hint">Searched: ${esc(seo.sources.map((s) => s.title || s.uri).join("; "))}</p>` : ""}`
        : '<p class="hint">not written yet</p>';
    }

    async function refresh() {
      const p = await api("GET", base);
      current = p;
      document.title = `reelcrew: ${p.topic}`;
      $("#topic").textContent = p.topic;
      $("#status").outerHTML = `<span id="status" class="status ${esc(p.status)}">${esc(p.status)}</span>`;
      $("#stage").textContent = `${p.stage} · ${p.clips_done}/${p.clips_total} clips · $${p.cost_usd.toFixed(2)}`;
      $("#progress").value = p.progress;
      $("#error").textContent = p.status === "done" ? "" : (p.error || "");
      const waiting = p.status === "awaiting_approval";
      $("#approval").hidden = !waiting;
      if (waiting) {
        const e = p.estimate;
        $("#estimate").textContent = `Estimate: $${e.usd.toFixed(2)} for ${e.clips} clip(s), ${e.seconds} s of video.` +
          (e.lines || []).map(([name, usd]) => ` ${name}: $${usd.toFixed(4)}.`).join("");
      }
      renderText(p); renderPrompts(p); renderClips(p); renderFinal(p);
    }

    $("#approve").addEventListener("click", async () => {
      $("#approve").disabled = true;
      try { await api("POST", `${base}/approve`); } catch (error) { alert(error.message); }
      $("#approve").disabled = false;
      refresh();
    });
    $("#resume").addEventListener("click", () => api("POST", `${base}/resume`).catch((e) => alert(e.message)));
    $("#cancel").addEventListener("click", () => {
      if (confirm("Cancel this production? Operations already at Veo finish; nothing new is submitted."))
        api("DELETE", base).then(refresh).catch((e) => alert(e.message));
    });
    const later = debounce(refresh, 150);
    listen(`${base}/events`, (event) => {
      const item = document.createElement("li");
      const when = new Date(event.at * 1000).toLocaleTimeString();
      item.textContent = `${when} ${event.kind}${event.clip_index ? ` clip ${event.clip_index}` : ""}: ${event.message}` +
        (event.actor ? ` (by ${event.actor})` : "");
      $("#events").appendChild(item);
      later();
    });
    refresh();
    return () => current;
  }

  // -- cost and quota --------------------------------------------------------------------------
  const table = (rows) => `<table>${Object.entries(rows).map(([k, v]) =>
    `<tr><td>${esc(k)}</td><td>$${Number(v).toFixed(4)}</td></tr>`).join("") || "<tr><td>nothing yet</td></tr>"}</table>`;

  async function cost() {
    const c = await api("GET", "/api/cost");
    $("#cost").innerHTML = `<p>Total: <b>$${c.total_usd.toFixed(4)}</b>; possible extra charges: ${c.possible_extra_charges}</p>
      <h3>Per production</h3>${table(c.production)}<h3>Per day (UTC)</h3>${table(c.day)}<h3>Per model</h3>${table(c.model)}`;
  }

  async function quota() {
    const refresh = async () => {
      const q = await api("GET", "/api/quota");
      const gates = q.gates.map((g) => `<tr><td>${esc(g.name)}</td><td>${g.open ? "paused" : "open for submits"}</td>
        <td>${g.until ? new Date(g.until * 1000).toLocaleString() : ""}</td><td>${esc(g.reason || "")}</td>
        <td>${g.consecutive_failures}</td></tr>`).join("");
      $("#quota").innerHTML = `<p>Submits in the last minute: <b>${q.submits_last_minute}</b> (limit ${q.rpm}/min);
        today: <b>${q.submits_today}</b>${q.rpd ? ` (limit ${q.rpd}/day)` : ""}; in flight: <b>${q.in_flight}</b>
        (limit ${q.max_concurrent})</p><table><tr><th>gate</th><th>state</th><th>until</th><th>reason</th>
        <th>failures in a row</th></tr>${gates || '<tr><td colspan="5">no pause or breaker recorded</td></tr>'}</table>`;
    };
    await refresh();
    listen("/api/events", debounce(refresh, 500));
    dead();
  }

  // dead letters (with a broker): shown under the quota, each with a retry button
  async function dead() {
    const box = $("#dead");
    if (!box) return;
    const refresh = async () => {
      const d = await api("GET", "/api/dead");
      box.innerHTML = d.dead_letters.length ? `<table><tr><th>id</th><th>when</th><th>task</th><th>production</th>
        <th>attempts</th><th>error</th><th></th></tr>${d.dead_letters.map((x) => `<tr><td>${x.id}</td>
        <td>${new Date(x.at * 1000).toLocaleString()}</td><td>${esc(x.task)}</td><td>${esc(x.production_id || "")}</td>
        <td>${x.attempts}</td><td>${esc(x.error || "")}</td>
        <td><button data-dead="${x.id}">retry</button></td></tr>`).join("")}</table>` : "<p>no dead letters</p>";
      box.querySelectorAll("button[data-dead]").forEach((b) => b.addEventListener("click", async () => {
        b.disabled = true;
        try { await api("POST", `/api/dead/${b.dataset.dead}/retry`); } catch (e) { alert(e.message); }
        refresh();
      }));
    };
    await refresh();
    listen("/api/events", debounce(refresh, 1000));
  }

  return {index, production, cost, quota, dead, api};
})();
