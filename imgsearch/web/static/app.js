// imgsearch's pages: infinite scroll, search by a dropped or pasted image, the keyboard, the duplicates review
// and live progress of a re-scan. No inline scripts (the Content-Security-Policy forbids them), no CDN.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const page = document.body.dataset.page;

function thumb(photo, at = "") {  // a photo's (or a video moment's) thumbnail, as every grid shows them
  const img = document.createElement("img");
  img.src = `/api/v1/images/${photo.id}/thumb?size=320` + (at ? `&${at}` : "");
  img.alt = photo.name;
  return img;
}

function tile(r, query, index) {  // the same markup as the tile macro in templates/macros.html
  const box = document.createElement("div");
  box.className = "tile";
  box.dataset.id = r.id;
  const open = document.createElement("a");
  open.className = "open";
  const at = r.time_ms !== null && r.time_ms !== undefined ? `t=${r.time_ms}` : "";
  open.href = `/photo/${r.id}` + (query ? `?${query}&i=${index}` + (at ? `&${at}` : "") : (at ? `?${at}` : ""));
  open.title = `${r.path} (${r.score.toFixed(3)})`;
  const img = thumb(r, at);
  img.loading = "lazy";
  img.width = img.height = 320;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = r.score.toFixed(3);
  open.append(img, score);
  if (r.at) {
    const badge = document.createElement("span");
    badge.className = "at";
    badge.title = "the best-matching moment of this video";
    badge.textContent = `\u25b6 ${r.at}`;
    open.append(badge);
  }
  const like = document.createElement("a");
  like.className = "like";
  like.href = `/?q=like:${r.id}`;
  like.title = "Photos like this one";
  like.textContent = "Similar";
  box.append(open, like);
  return box;
}

async function api(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function message(text, bad = false) {
  let p = $("#dup-message") || $(".error") || $(".empty");
  if (!p) { p = document.createElement("p"); $("main").prepend(p); }
  p.className = bad ? "error" : "message";
  p.textContent = text;
}

// --- search: "more like this" and "fewer like this" on every result (relevance feedback, kept in the URL) -----
function marks() {  // the photos this page's URL marks up and down
  const url = new URL(window.location.href);
  return { like: url.searchParams.getAll("like"), unlike: url.searchParams.getAll("unlike") };
}

function markedHref(marked) {  // this page's URL with other marks, from its first page
  const next = new URL(window.location.href);
  ["like", "unlike", "offset"].forEach((k) => next.searchParams.delete(k));
  for (const k of ["like", "unlike"]) marked[k].forEach((id) => next.searchParams.append(k, id));
  return next.pathname + next.search;
}

function markButtons(box) {
  const id = box.dataset.id;
  const marked = marks();
  box.classList.toggle("liked", marked.like.includes(id));
  for (const [kind, sign, what] of [["like", "+", "More like this"], ["unlike", "\u2212", "Fewer like this"]]) {
    const on = marked[kind].includes(id);
    // a photo is marked one way at most; clicking a mark again removes it
    const others = { like: marked.like.filter((x) => x !== id), unlike: marked.unlike.filter((x) => x !== id) };
    if (!on) others[kind].push(id);
    const a = document.createElement("a");
    a.className = `mark mark-${kind}` + (on ? " on" : "");
    a.href = markedHref(others);
    a.title = on ? `${what} (marked: click to unmark)` : what;
    a.setAttribute("aria-label", a.title);
    a.textContent = sign;
    box.append(a);
  }
}

// --- search: select photos (click the box; shift-click a range) to download them or find more like them -------
const selected = new Set();
let lastPicked = null;
function selectionBar() {
  const bar = $("#selection");
  if (!bar) return;
  bar.hidden = selected.size === 0;
  $("#selected-count").textContent = `${selected.size} selected`;
  const ids = [...selected];
  $("#download").href = "/api/v1/download?" + ids.map((id) => `id=${id}`).join("&");
  const unliked = marks().unlike;
  $("#more-like").href = markedHref({ like: ids.filter((id) => !unliked.includes(id)), unlike: unliked });
}

function pickBox(box) {
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.className = "pick-photo";
  pick.setAttribute("aria-label", "select this photo");
  pick.checked = selected.has(box.dataset.id);
  pick.addEventListener("click", (e) => {
    const tiles = [...document.querySelectorAll("#grid .tile")];
    const range = e.shiftKey && lastPicked ? [tiles.indexOf(lastPicked), tiles.indexOf(box)].sort((a, b) => a - b) : null;
    for (const tile of range ? tiles.slice(range[0], range[1] + 1) : [box]) {
      if (pick.checked) selected.add(tile.dataset.id); else selected.delete(tile.dataset.id);
      tile.classList.toggle("picked", pick.checked);
      tile.querySelector(".pick-photo").checked = pick.checked;
    }
    lastPicked = box;
    selectionBar();
  });
  box.append(pick);
}

function selection() {
  if (!$("#selection")) return;
  $("#clear-selection").addEventListener("click", () => {
    selected.clear();
    document.querySelectorAll(".tile.picked").forEach((t) => { t.classList.remove("picked"); t.querySelector(".pick-photo").checked = false; });
    selectionBar();
  });
}

// --- search: more results as the page scrolls ------------------------------------------------------------
function infiniteScroll() {
  const grid = $("#grid");
  if (!grid || !grid.dataset.api) return;
  let next = grid.dataset.next, loading = false;
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries[0].isIntersecting || !next || loading) return;
    loading = true;
    try {
      const body = await api(`${grid.dataset.api}&offset=${next}`);
      body.results.forEach((r) => {
        const box = tile(r, grid.dataset.query, body.offset + r.rank - 1);
        markButtons(box);
        pickBox(box);
        grid.append(box);
      });
      next = body.next_offset;
    } catch (e) { message(e.message, true); next = null; }
    loading = false;
  }, { rootMargin: "800px" });
  observer.observe($("#more"));
}

// --- search by an image: drop it, or paste it ------------------------------------------------------------
function filterParams() {  // the filters panel's fields that are set (an upload is searched with them too)
  const form = $(".filter-form");
  const mine = ["q", "like", "unlike", "upload"];  // the previous search's words, marks and image are not filters
  const given = form ? [...new FormData(form)].filter(([k, v]) => !mine.includes(k) && v !== "") : [];
  return new URLSearchParams(given);
}

async function searchByImage(file) {
  // the image is sent once; the server keeps its vector under an id, and the results get an address of their own
  // (/?upload=ID): further pages, reload, Back and a shared link all work
  const form = new FormData();
  form.append("image", file);
  const params = filterParams();
  $("#drop").textContent = `Looking for photos like ${file.name || "the pasted image"}...`;
  try {
    const body = await api(`/api/v1/search/image?${params}&k=1`, { method: "POST", body: form });
    const words = $("#q").value.trim();
    if (words) params.set("q", words);
    params.set("upload", body.upload);
    window.location = `/?${params}`;
  } catch (e) { message(e.message, true); }
}

function dropZone() {
  const zone = $("#drop");
  if (!zone) return;
  const image = (items) => [...items].find((f) => f.type && f.type.startsWith("image/"));
  document.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  document.addEventListener("dragleave", () => zone.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = image(e.dataTransfer.files);
    if (file) searchByImage(file);
  });
  const pick = $("#pick");  // a file picker: on a phone, the camera or the photo library
  if (pick) pick.addEventListener("change", () => { if (pick.files.length) searchByImage(pick.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
    if (item) searchByImage(item.getAsFile());
  });
}

// --- the keyboard: / search, arrows move, Enter opens, s similar, Esc back ----------------------------------
function keyboard() {
  document.addEventListener("keydown", (e) => {
    const active = document.activeElement;
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName) && !["checkbox", "file"].includes(active.type);
    if (e.key === "/" && !typing) { e.preventDefault(); $("#q").focus(); $("#q").select(); return; }
    if (e.key === "Escape") {  // closes what is open (the box being typed in, a selection); never leaves the app
      if (typing) { document.activeElement.blur(); return; }
      const back = $("#back");
      if (back) { window.location = back.href; return; }  // a photo: back to its results
      document.querySelectorAll(".tile.selected").forEach((t) => t.classList.remove("selected"));
      if ($("#clear-selection") && selected.size) $("#clear-selection").click();
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (page === "photo") {
      if (e.key === "ArrowLeft" && $("#prev")) window.location = $("#prev").href;
      if (e.key === "ArrowRight" && $("#next")) window.location = $("#next").href;
      if (e.key === "s") window.location = $("#similar").href;
      return;
    }
    const tiles = [...document.querySelectorAll(".tile .open")];
    if (!tiles.length) return;
    const at = tiles.indexOf(document.activeElement);
    const columns = Math.max(1, Math.round($("#grid").clientWidth / tiles[0].parentElement.getBoundingClientRect().width));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
    if (e.key in moves) {
      e.preventDefault();
      const to = tiles[Math.min(tiles.length - 1, Math.max(0, at < 0 ? 0 : at + moves[e.key]))];
      tiles.forEach((t) => t.parentElement.classList.toggle("selected", t === to));
      to.focus();
    } else if (e.key === "s" && at >= 0) {
      window.location = `/?q=like:${tiles[at].parentElement.dataset.id}`;
    }
  });
}

// --- the duplicates review --------------------------------------------------------------------------------
const HANDFUL = 5;  // acting on more groups than this at once asks for the number, typed (as the API requires)
async function duplicates() {
  const groups = $("#groups");
  const keep = new Map();  // group (by its suggested keeper) -> the keeper chosen instead
  let warnings = [];  // e.g. "the groups hold 30% of the library": acting then needs a second yes
  const tiers = () => $("#tier").value.split(",").filter(Boolean);
  async function load() {
    groups.setAttribute("aria-busy", "true");
    const params = new URLSearchParams();
    tiers().forEach((t) => params.append("tier", t));
    keep.forEach((chosen) => params.append("keep", chosen));
    try {
      let body = await api(`/api/v1/dups?${params}`);
      while (body.job !== undefined) {  // no answer for the library as it is: a scan runs; its progress, then ask again
        const summary = $("#dup-summary");
        summary.className = "message";
        await follow(body, (e) => {
          if (e.type === "stage") summary.textContent = `Looking for copies: ${e.stage}...`;
          if (e.type === "progress") summary.textContent = `Looking for copies: ${progressText(e)}`;
        });
        body = await api(`/api/v1/dups?${params}`);
      }
      groups.replaceChildren(...body.groups.map(group));
      if (!body.groups.length) groups.textContent = "No copies found.";
      warnings = body.warnings || [];
      const summary = $("#dup-summary");
      summary.textContent = warnings.join(" ") || `${body.groups.length} group(s).`;
      summary.className = warnings.length ? "error" : "message";
      borderline(tiers().includes("similar") ? body.borderline : [], body.thresholds.similar_cosine);
    } catch (e) { message(e.message, true); }
    groups.removeAttribute("aria-busy");
  }
  function borderline(pairs, threshold) {
    // what the similar threshold means, before acting on it: the pairs just above it (grouped) and just below
    const section = $("#borderline");
    section.hidden = !pairs.length;
    if (!pairs.length) return;
    $("#borderline-threshold").textContent = threshold.toFixed(3);
    $("#borderline-pairs").replaceChildren(...pairs.map((p) => {
      const card = document.createElement("figure");
      card.className = "pair " + (p.grouped ? "grouped" : "apart");
      for (const side of [p.a, p.b]) {
        const img = thumb(side);
        img.title = side.path;
        card.append(img);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = `${p.grouped ? "grouped" : "not grouped"}: cos ${p.cosine.toFixed(3)}`;
      card.append(caption);
      return card;
    }));
  }
  function group(g) {
    const box = document.createElement("article");
    box.className = "group";
    box.dataset.keeper = g.keeper;
    const head = document.createElement("h3");
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "pick";
    pick.value = g.keeper;
    pick.setAttribute("aria-label", "select this group");
    head.append(pick, ` ${g.tier}, ${g.members.length} photos; keeper: ${g.keeper_reason}`);
    const members = document.createElement("div");
    members.className = "members";
    for (const m of g.members) {
      const card = document.createElement("div");
      card.className = "member" + (m.id === g.keeper ? " keeper" : "");
      const img = thumb(m);
      const text = document.createElement("div");
      const evidence = m.relation === "keeper" ? "keep"
        : `${m.relation}${m.cosine !== null ? `, cos ${m.cosine}` : ""}${m.key_frames ? `, ${m.key_frames}` : ""}`;
      text.textContent = `${evidence}, ${m.width}x${m.height}, ${m.bytes.toLocaleString()} bytes, ${m.path}`;
      card.append(img, text);
      if (m.id !== g.keeper) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Keep this one";
        button.addEventListener("click", () => { keep.set(g.keeper, m.id); load(); });
        card.append(button);
      }
      members.append(card);
    }
    box.append(head, members);
    return box;
  }
  async function act(action) {
    const chosen = [...document.querySelectorAll(".pick:checked")].map((p) => Number(p.value));
    if (!chosen.length) { message("Select the groups to act on first.", true); return; }
    const verb = action === "move" ? "move aside the copies in" : "link the exact copies in";
    const ask = warnings.length || chosen.length > HANDFUL;
    if (ask) {  // typed, so one click on "Select all" can never act on a whole library
      const typed = window.prompt(`${warnings.join(" ")}\n\nType ${chosen.length} to ${verb} ${chosen.length} group(s).`);
      if ((typed || "").trim() !== String(chosen.length)) { message("Not confirmed: nothing was changed.", true); return; }
    }
    const body = { action, groups: chosen, keep: [...keep.values()], tier: tiers(), yes: Boolean(ask) };
    try {
      const done = await api("/api/v1/dups/actions", { method: "POST", headers: { "Content-Type": "application/json" },
                                                         body: JSON.stringify(body) });
      const failed = done.problems.map(([path, why]) => `${path.split("/").pop()}: ${why}`);
      message(`Done: ${done.done.length} file(s) ${action === "move" ? "moved aside" : "linked"}. Undo puts them back.` +
              (failed.length ? ` ${failed.length} not: ${failed.slice(0, 3).join("; ")}${failed.length > 3 ? "; ..." : ""}` : ""),
              failed.length > 0);
      keep.clear();
      await load();
    } catch (e) { message(e.message, true); }
  }
  $("#select-all").addEventListener("click", () => document.querySelectorAll(".pick").forEach((p) => { p.checked = true; }));
  $("#move").addEventListener("click", () => act("move"));
  $("#link").addEventListener("click", () => act("link"));
  $("#tier").addEventListener("change", () => {
    keep.clear();
    const said = $("#dup-message");
    if (said) said.textContent = "";  // what was said about the other groups
    load();
  });
  $("#undo").addEventListener("click", async () => {
    try {
      const done = await api("/api/v1/dups/undo", { method: "POST" });
      message(`Undone: ${done.done.length} file(s) restored.`);
      await load();
    } catch (e) { message(e.message, true); }
  });
  await load();
}

// --- background jobs: a re-scan, a duplicates scan ------------------------------------------------------------
function progressText(e) {  // a job's progress event in words: "finding candidates: 1200/5000"
  return `${e.stage}: ${e.done}${e.total ? "/" + e.total : ""}`;
}

function follow(job, onEvent) {
  // a job's events until it ends: resolves with its "done" event, rejects when it failed
  return new Promise((resolve, reject) => {
    const events = new EventSource(job.events);
    events.onmessage = (m) => {
      const e = JSON.parse(m.data);
      onEvent(e);
      if (e.type === "done") {
        events.close();
        if (e.ok) resolve(e); else reject(new Error(e.summary));
      }
    };
    events.onerror = () => { events.close(); reject(new Error("The server stopped answering: reload the page.")); };
  });
}

// --- status: live counts, and a re-scan with live progress -----------------------------------------------------
const STATUS_EVERY_MS = 5000;
async function refreshStatus() {  // the library table again, as the server renders it (counts, last run, watching)
  try {
    const response = await fetch("/status", { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("#library");
    if (fresh) $("#library").replaceWith(fresh);
  } catch (e) { /* the next round tries again */ }
}

function rescan() {
  setInterval(refreshStatus, STATUS_EVERY_MS);
  const button = $("#rescan"), line = $("#job"), bar = $("#job-progress");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const job = await api("/api/v1/jobs/rescan", { method: "POST" });
      const done = await follow(job, (e) => {
        if (e.type === "stage") { line.textContent = `${e.stage}...`; bar.hidden = !e.total; bar.max = e.total || 1; bar.value = 0; }
        if (e.type === "progress") { bar.value = e.done; line.textContent = progressText(e); }
      });
      line.textContent = "Indexed: " + done.summary;
      refreshStatus();
    } catch (e) { line.textContent = "Failed: " + e.message; }
    bar.hidden = true;
    button.disabled = false;
  });
}

if (page === "search") {
  if ($("#grid") && $("#grid").dataset.query) {
    document.querySelectorAll("#grid .tile").forEach((box) => { markButtons(box); pickBox(box); });
    selection();
  }
  infiniteScroll();
  dropZone();
}
if (page === "dups") duplicates();
if (page === "status") rescan();
keyboard();
