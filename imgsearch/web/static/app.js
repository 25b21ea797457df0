// imgsearch's pages: infinite scroll, search by a dropped or pasted image, the keyboard, the duplicates review
// and live progress of a re-scan. No inline scripts (the Content-Security-Policy forbids them), no CDN.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const page = document.body.dataset.page;

function thumb(photo, at = "") {  // a photo's (or a video moment's) thumbnail, as every grid shows them
  const img = document.createElement("img");
  img.src = photo.thumb || `/api/v1/images/${photo.id}/thumb?size=320` + (at ? `&${at}` : "");  // inline if sent
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
  const scored = r.score !== undefined;  // a search result (a timeline's photo has a date instead)
  open.title = scored ? `${r.path} (${r.score.toFixed(3)})` : `${r.path} (${r.date.replace("T", " ")})`;
  const img = thumb(r, at);
  img.loading = "lazy";
  img.width = img.height = 320;
  open.append(img);
  if (scored) {
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    open.append(score);
  }
  if (r.video && !r.at) {
    const badge = document.createElement("span");
    badge.className = "at";
    badge.textContent = "\u25b6";
    badge.title = "a video";
    open.append(badge);
  }
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

function postJson(url, body) {  // a POST with a JSON body, answered as api() answers
  return api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function typedBack(question, count) {  // the number typed back: one click never acts on many at once
  return (window.prompt(question) || "").trim() === String(count);
}

function notDone(problems) {  // what an action left alone, in a few words: " 2 not: a.jpg: why; b.jpg: why"
  const failed = problems.map(([path, why]) => `${path.split("/").pop()}: ${why}`);
  return failed.length ? ` ${failed.length} not: ${failed.slice(0, 3).join("; ")}${failed.length > 3 ? "; ..." : ""}` : "";
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
  box.classList.toggle("picked", pick.checked);  // a tile made again (a block filled anew, more results) shows it
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
  longPress(box, () => pick.click());
}

const LONG_PRESS_MS = 500;
function longPress(box, action) {  // on a touch screen, holding a photo selects it (as phone galleries do)
  let timer = null, at = null;
  const cancel = () => { clearTimeout(timer); timer = null; };
  box.addEventListener("pointerdown", (e) => {
    if (e.pointerType !== "touch") return;
    at = { x: e.clientX, y: e.clientY };
    timer = setTimeout(() => { timer = null; action(); box.dataset.pressed = "1"; }, LONG_PRESS_MS);
  });
  box.addEventListener("pointermove", (e) => { if (timer && Math.hypot(e.clientX - at.x, e.clientY - at.y) > 10) cancel(); });
  box.addEventListener("pointerup", cancel);
  box.addEventListener("pointercancel", cancel);
  box.addEventListener("contextmenu", (e) => { if (box.dataset.pressed || timer) e.preventDefault(); });
  box.addEventListener("click", (e) => {  // the tap that ends a long press opens nothing
    if (!box.dataset.pressed) return;
    delete box.dataset.pressed;
    if (e.target.closest(".open")) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);
}

function selection() {
  if (!$("#selection")) return;
  const clear = () => {
    selected.clear();
    document.querySelectorAll(".tile.picked").forEach((t) => { t.classList.remove("picked"); t.querySelector(".pick-photo").checked = false; });
    selectionBar();
  };
  $("#clear-selection").addEventListener("click", clear);
  const said = $("#set-aside-message");
  $("#set-aside").addEventListener("click", async () => {  // out of the library, journaled: Undo puts them back
    const ids = [...selected].map(Number);
    const ask = ids.length > HANDFUL;  // typed, as for duplicates: one click never moves a whole selection
    if (ask && !typedBack(`Type ${ids.length} to set ${ids.length} photos aside (moved out of the library).`, ids.length)) {
      message("Not confirmed: nothing was moved.", true);
      return;
    }
    try {
      const done = await postJson("/api/v1/set-aside", { ids, yes: ask });
      const gone = new Set(done.done.map((s) => String(s.image_id)));
      document.querySelectorAll(".tile").forEach((t) => { if (gone.has(t.dataset.id)) t.remove(); });
      clear();
      said.firstElementChild.textContent = `Set aside ${done.done.length} photo(s): moved out of the library.` +
        notDone(done.problems);
      said.hidden = false;
      $("#undo-set-aside").hidden = false;
      said.className = done.problems.length ? "error" : "message";
    } catch (e) { message(e.message, true); }
  });
  $("#tag-selection").addEventListener("click", async () => {  // "beach, sea, -city": add two, take one away
    const typed = window.prompt(`Tags for ${selected.size} photo(s), separated by commas; a minus before one takes it away:`);
    const words = (typed || "").split(",").map((w) => w.trim()).filter(Boolean);
    if (!words.length) return;
    const add = words.filter((w) => !w.startsWith("-")), remove = words.filter((w) => w.startsWith("-")).map((w) => w.slice(1).trim());
    try {
      const done = await postJson("/api/v1/tags", { ids: [...selected].map(Number), add, remove });
      said.firstElementChild.textContent = `Tagged: ${add.join(", ") || "nothing added"}` +
        (remove.length ? `; ${done.photos_that_lost_one} photo(s) lost ${remove.join(", ")}` : "") + ".";
      $("#undo-set-aside").hidden = true;
      said.hidden = false;
      said.className = "message";
    } catch (e) { message(e.message, true); }
  });
  $("#undo-set-aside").addEventListener("click", async () => {
    try {
      const done = await api("/api/v1/dups/undo", { method: "POST" });
      said.firstElementChild.textContent = `Put back ${done.done.length} photo(s).`;
      $("#undo-set-aside").hidden = true;
      window.location.reload();
    } catch (e) { message(e.message, true); }
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
    if (viewer.key(e)) return;  // the viewer, while open, has the keys
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
    const grid = tiles[0].parentElement.parentElement;  // the results' grid, or a block of the timeline
    const columns = Math.max(1, Math.round(grid.clientWidth / tiles[0].parentElement.getBoundingClientRect().width));
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

// --- the home page: every photo by date, month by month; only the blocks near the screen hold tiles --------
const BLOCK_ROWS = 6;  // a month is laid out in blocks of this many rows of tiles, each loaded when near the screen
const GAP = 6;  // px between tiles (as .grid)
function timeline() {
  const root = $("#timeline");
  if (!root || !root.querySelector(".month")) return;
  const filters = root.dataset.filters;
  let columns = 0, side = 0;
  const near = new IntersectionObserver((entries) => {
    for (const e of entries) { if (e.isIntersecting) fill(e.target); else empty(e.target); }
  }, { rootMargin: `${Math.round(innerHeight / 2)}px 0px` });  // half a screen ahead: loaded before it is seen

  function layout() {  // blocks of known height for every month (placeholders until near the screen)
    const width = root.clientWidth;
    const wanted = Math.max(3, Math.round(width / (width >= 2000 ? 240 : 170)));
    if (wanted === columns) return;
    columns = wanted;
    side = (width - GAP * (columns - 1)) / columns;
    root.style.setProperty("--columns", columns);
    const per = columns * BLOCK_ROWS;
    near.disconnect();
    for (const month of root.querySelectorAll(".month")) {
      const count = Number(month.dataset.count), blocks = month.querySelector(".blocks");
      blocks.replaceChildren();
      for (let offset = 0; offset < count; offset += per) {
        const block = document.createElement("div");
        block.className = "block grid";
        block.dataset.offset = offset;
        block.dataset.limit = Math.min(per, count - offset);
        const rows = Math.ceil(block.dataset.limit / columns);
        block.style.height = `${rows * side + (rows - 1) * GAP}px`;
        block.style.containIntrinsicSize = `auto ${block.style.height}`;
        blocks.append(block);
        near.observe(block);
      }
    }
  }

  async function fill(block) {
    if (block.dataset.state) return;
    const ticket = String(Math.random());  // an answer that comes after the block was emptied is dropped
    block.dataset.state = ticket;
    const month = block.closest(".month").dataset.month;
    try {
      // the thumbnails already made come inline: one request for a block's pictures, not one each
      const body = await api(`/api/v1/timeline/${month}?offset=${block.dataset.offset}&limit=${block.dataset.limit}` +
                             `&inline=320` + (filters ? `&${filters}` : ""));
      if (block.dataset.state !== ticket) return;
      block.replaceChildren(...body.photos.map((p) => { const box = tile(p, "", 0); pickBox(box); return box; }));
      block.dataset.state = "filled";
      root.dispatchEvent(new CustomEvent("filled"));
    } catch (e) { message(e.message, true); }
  }
  function empty(block) { delete block.dataset.state; block.replaceChildren(); }

  // the scrubber: the years at their place along the timeline; press or drag along it to go anywhere
  const scrubber = $("#scrubber"), bubble = $("#scrub-at");
  function placeYears() {
    const total = root.scrollHeight || 1;
    for (const a of scrubber.querySelectorAll("a")) {
      a.style.top = `${(100 * ($(`#m-${a.dataset.month}`).offsetTop - root.offsetTop) / total).toFixed(2)}%`;
    }
  }
  function monthAt(fraction) {  // the month heading at this share of the timeline's height
    const y = root.offsetTop + fraction * root.scrollHeight;
    let found = root.querySelector(".month");
    for (const m of root.querySelectorAll(".month")) { if (m.offsetTop <= y) found = m; else break; }
    return found;
  }
  function scrubTo(e) {
    const bar = scrubber.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (e.clientY - bar.top) / bar.height));
    const month = monthAt(fraction);
    bubble.hidden = false;
    bubble.style.top = `${(fraction * 100).toFixed(2)}%`;
    bubble.textContent = month.querySelector("h2").firstChild.textContent.trim();
    window.scrollTo({ top: root.offsetTop + fraction * root.scrollHeight - 60 });
  }
  let dragging = false;
  scrubber.addEventListener("pointerdown", (e) => {
    if (e.target.tagName === "A") return;  // a year: its link jumps to it
    dragging = true; scrubber.setPointerCapture(e.pointerId); scrubTo(e);
  });
  scrubber.addEventListener("pointermove", (e) => { if (dragging) scrubTo(e); });
  scrubber.addEventListener("pointerup", () => { dragging = false; bubble.hidden = true; });
  function fillInView() {  // after a jump: ask for what is on screen now, not a frame later when the observer says
    for (const block of root.querySelectorAll(".month .block:not([data-state])")) {
      const r = block.getBoundingClientRect();
      if (r.top >= innerHeight) break;  // blocks come in page order: the rest are below the screen
      if (r.bottom > 0) fill(block);
    }
  }
  scrubber.addEventListener("click", (e) => {
    const a = e.target.closest("a");
    if (!a) return;
    e.preventDefault();
    $(`#m-${a.dataset.month}`).scrollIntoView();
    fillInView();
    history.replaceState(history.state, "", a.hash);
  });

  // the scrubber starts where the timeline does (never over the search form above it)
  let queued = false;
  const follow = () => {
    queued = false;
    const header = $("header").getBoundingClientRect().bottom;
    const top = Math.max(header, root.getBoundingClientRect().top);
    scrubber.style.top = `${top}px`;
    scrubber.classList.toggle("away", innerHeight - top < 160);  // too little of it on screen yet to be of use
  };
  window.addEventListener("scroll", () => { if (!queued) { queued = true; requestAnimationFrame(follow); } }, { passive: true });
  layout();
  placeYears();
  follow();
  new ResizeObserver(() => { layout(); placeYears(); follow(); }).observe(root);
  if (window.location.hash.startsWith("#m-") && $(window.location.hash)) $(window.location.hash).scrollIntoView();
}

// --- the viewer: a lightbox over any grid (timeline, results, similar photos) ------------------------------
// Next and previous follow the grid's order (keys, buttons, a swipe), the wheel, a pinch or a double click zoom,
// a drag pans; the URL names the photo (view=ID) beside the grid's own, so Back, reload and a shared link return
// to the same place. Pictures are the server's 1280 px previews (so HEIC, RAW and JXL show in any browser).
const viewer = {
  box: null, id: null, pushed: false, zoom: 1, x: 0, y: 0,

  tiles() { return [...document.querySelectorAll("[data-lightbox] .tile")]; },
  isOpen() { return this.box !== null && !this.box.hidden; },

  build() {
    const box = document.createElement("div");
    box.id = "lightbox";
    box.className = "lightbox";
    box.hidden = true;
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-label", "Photo viewer");
    box.innerHTML = `<div class="lb-stage"><img class="lb-picture" alt="" draggable="false"><video class="lb-video" controls hidden></video></div>
      <div class="lb-bar"><button type="button" class="lb-close" aria-label="Close (Esc)">&times;</button>
      <span class="lb-where"></span><button type="button" class="lb-info-toggle" aria-label="Information (i)">i</button></div>
      <button type="button" class="lb-prev" aria-label="Previous photo">&#8249;</button>
      <button type="button" class="lb-next" aria-label="Next photo">&#8250;</button>
      <aside class="lb-info" aria-label="About this photo"><h2 class="lb-name"></h2><table class="meta"></table>
      <p class="lb-links"><a class="lb-similar button">Find similar</a> <a class="lb-page button">Photo page</a>
      <a class="lb-original button" target="_blank" rel="noopener">Original</a></p></aside>`;
    document.body.append(box);
    this.box = box;
    $(".lb-close", box).addEventListener("click", () => this.close());
    $(".lb-prev", box).addEventListener("click", () => this.step(-1));
    $(".lb-next", box).addEventListener("click", () => this.step(1));
    $(".lb-info-toggle", box).addEventListener("click", () => box.classList.toggle("info-open"));
    if (window.matchMedia("(min-width: 900px)").matches) box.classList.add("info-open");
    this.gestures($(".lb-stage", box));
  },

  place(id) {  // the grid's tiles, and where the photo `id` is among them (-1: not in the page)
    const tiles = this.tiles();
    return { tiles, at: tiles.findIndex((t) => t.dataset.id === String(id)) };
  },

  neighbour(offset) {  // the tile `offset` away from the open photo's, in the grid's order
    const { tiles, at } = this.place(this.id);
    return at < 0 ? null : tiles[at + offset] || null;
  },

  preview(id, at) { return `/api/v1/images/${id}/thumb?size=1280` + (at ? `&t=${at}` : ""); },

  tileTime(tile) {  // a video result's matched moment, from its link
    const t = tile && new URL(tile.querySelector(".open").href).searchParams.get("t");
    return t ? Number(t) : 0;
  },

  async show(id, how, at = 0) {  // how: "push" (from the grid), "replace" (a step), "none" (from the URL)
    if (!this.box) this.build();
    this.id = String(id);
    this.reset();
    const box = this.box, picture = $(".lb-picture", box), video = $(".lb-video", box);
    box.hidden = false;
    document.body.classList.add("viewing");
    const url = new URL(window.location.href);
    url.searchParams.set("view", this.id);
    if (how === "push") { history.pushState({ view: this.id }, "", url); this.pushed = true; }
    if (how === "replace") history.replaceState({ view: this.id }, "", url);
    picture.hidden = false;
    picture.src = this.preview(id, at);
    video.hidden = true;
    video.removeAttribute("src");
    const { tiles, at: index } = this.place(this.id);
    if (index >= 0) tiles[index].scrollIntoView({ block: "nearest" });  // the grid follows (and loads what comes next)
    this.buttons();
    for (const n of [this.neighbour(1), this.neighbour(-1)]) {  // the next pictures, fetched before they are asked for
      if (n) new Image().src = this.preview(n.dataset.id, this.tileTime(n));
    }
    let info;
    try { info = await api(`/api/v1/images/${id}`); } catch (e) { $(".lb-name", box).textContent = e.message; return; }
    if (this.id !== String(id)) return;  // stepped on meanwhile
    picture.alt = info.name;
    if (info.duration_ms !== null) {  // a video plays from the matched moment
      video.hidden = false;
      picture.hidden = true;
      video.src = `/api/v1/images/${id}/file#t=${at / 1000}`;
      video.poster = this.preview(id, at);
    }
    this.describe(info);
  },

  describe(info) {
    const box = this.box;
    $(".lb-name", box).textContent = info.name;
    const rows = [["Taken", info.taken_at ? info.taken_at.replace("T", " ") : `unknown (file: ${info.date.replace("T", " ")})`],
      ["Size", `${info.width} x ${info.height} px, ${info.size.toLocaleString()} bytes${info.format ? ", " + info.format : ""}`],
      ["Camera", info.camera], ["Place", [info.where, info.gps ? `(${info.gps.map((v) => v.toFixed(5)).join(", ")})` : null].filter(Boolean).join(" ") || null],
      ["Tags", info.tags.length ? info.tags.map(([label]) => label).join(", ") : null], ["File", info.path]];
    const table = $(".meta", box);
    table.replaceChildren(...rows.filter(([, v]) => v).map(([k, v]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th"), td = document.createElement("td");
      th.textContent = k; td.textContent = v;
      tr.append(th, td);
      return tr;
    }));
    $(".lb-similar", box).href = `/?q=like:${info.id}`;
    const { tiles, at } = this.place(this.id);  // its page, in its place among the results
    $(".lb-page", box).href = at >= 0 ? tiles[at].querySelector(".open").href : `/photo/${info.id}`;
    $(".lb-original", box).href = `/api/v1/images/${info.id}/file`;
    const month = $(`#m-${(info.date || "").slice(0, 7)}`);
    if (at < 0 && month) month.scrollIntoView();  // opened from a link: the timeline goes to the photo's month
    const more = $("#grid") && $("#grid").dataset.next ? "+" : "";  // results still to load
    $(".lb-where", box).textContent = $("#timeline") ? new Date(info.date + "Z").toLocaleDateString(undefined,
      { year: "numeric", month: "long", day: "numeric", timeZone: "UTC" }) : at < 0 ? "" : `${at + 1} of ${tiles.length}${more}`;
  },

  buttons() {
    $(".lb-prev", this.box).disabled = !this.neighbour(-1);
    $(".lb-next", this.box).disabled = !this.neighbour(1);
  },

  step(offset) {
    const to = this.neighbour(offset);
    if (to) this.show(to.dataset.id, "replace", this.tileTime(to));
  },

  close(how = "back") {
    if (!this.isOpen()) return;
    const id = this.id;
    this.box.hidden = true;
    $(".lb-video", this.box).pause();
    document.body.classList.remove("viewing");
    this.id = null;
    if (how === "back" && this.pushed) { this.pushed = false; history.back(); } else if (how === "back") {
      const url = new URL(window.location.href);
      url.searchParams.delete("view");
      history.replaceState(null, "", url);
    }
    const { tiles, at } = this.place(id);
    if (at >= 0) { tiles[at].querySelector(".open").focus({ preventScroll: true }); tiles[at].scrollIntoView({ block: "nearest" }); }
  },

  reset() { this.zoom = 1; this.x = this.y = 0; this.apply(); },
  apply() {
    const picture = this.box && $(".lb-picture", this.box);
    if (picture) picture.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
    if (this.box) this.box.classList.toggle("zoomed", this.zoom > 1);
  },
  zoomAt(factor, cx, cy) {  // zoom by factor keeping the point (cx, cy) of the stage where it is
    const stage = $(".lb-stage", this.box).getBoundingClientRect();
    const zoom = Math.min(8, Math.max(1, this.zoom * factor));
    const px = cx - stage.left - stage.width / 2, py = cy - stage.top - stage.height / 2;
    this.x = px - (px - this.x) * (zoom / this.zoom);
    this.y = py - (py - this.y) * (zoom / this.zoom);
    this.zoom = zoom;
    if (zoom === 1) this.x = this.y = 0;
    this.apply();
  },

  gestures(stage) {
    const pointers = new Map();
    let start = null, pinch = null;
    stage.addEventListener("wheel", (e) => { e.preventDefault(); this.zoomAt(Math.exp(-e.deltaY * 0.002), e.clientX, e.clientY); },
                           { passive: false });
    stage.addEventListener("dblclick", (e) => this.zoomAt(this.zoom > 1 ? 1 / this.zoom : 2.5, e.clientX, e.clientY));
    stage.addEventListener("pointerdown", (e) => {
      if (e.target.tagName === "VIDEO") return;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      stage.setPointerCapture(e.pointerId);
      if (pointers.size === 1) start = { x: e.clientX, y: e.clientY, ox: this.x, oy: this.y };
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        pinch = { d: Math.hypot(a.x - b.x, a.y - b.y), zoom: this.zoom };
      }
    });
    stage.addEventListener("pointermove", (e) => {
      if (!pointers.has(e.pointerId)) return;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      if (pinch && pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        this.zoomAt(pinch.zoom * Math.hypot(a.x - b.x, a.y - b.y) / pinch.d / this.zoom, (a.x + b.x) / 2, (a.y + b.y) / 2);
      } else if (start && this.zoom > 1) {  // a drag pans the zoomed picture
        this.x = start.ox + e.clientX - start.x;
        this.y = start.oy + e.clientY - start.y;
        this.apply();
      }
    });
    const up = (e) => {
      if (!pointers.has(e.pointerId)) return;
      pointers.delete(e.pointerId);
      if (pointers.size < 2) pinch = null;
      if (start && pointers.size === 0 && this.zoom === 1) {  // a swipe: next or previous
        const dx = e.clientX - start.x, dy = e.clientY - start.y;
        if (Math.abs(dx) > 50 && Math.abs(dx) > 1.5 * Math.abs(dy)) this.step(dx < 0 ? 1 : -1);
        else if (dy > 80 && dy > 1.5 * Math.abs(dx)) this.close();  // a swipe down closes, as in phone galleries
      }
      if (pointers.size === 0) start = null;
    };
    stage.addEventListener("pointerup", up);
    stage.addEventListener("pointercancel", up);
  },

  key(e) {  // the viewer's keys; true when it took the key
    if (!this.isOpen()) return false;
    const actions = {
      Escape: () => this.close(), ArrowRight: () => this.step(1), ArrowLeft: () => this.step(-1),
      "+": () => this.zoomAt(1.5, innerWidth / 2, innerHeight / 2), "=": () => this.zoomAt(1.5, innerWidth / 2, innerHeight / 2),
      "-": () => this.zoomAt(1 / 1.5, innerWidth / 2, innerHeight / 2), 0: () => this.reset(),
      i: () => this.box.classList.toggle("info-open"), s: () => { window.location = $(".lb-similar", this.box).href; },
    };
    if (!(e.key in actions) || e.ctrlKey || e.metaKey || e.altKey) return e.key !== "Tab";
    e.preventDefault();
    actions[e.key]();
    return true;
  },

  start() {
    if (!document.querySelector("[data-lightbox]")) return;
    document.addEventListener("click", (e) => {  // a tile opens in the viewer (a new tab still gets the photo page)
      const open = e.target.closest("[data-lightbox] .tile .open");
      if (!open || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      const tile = open.closest(".tile");
      this.show(tile.dataset.id, "push", this.tileTime(tile));
    });
    const sync = () => {  // the URL decides: Back and Forward open and close the viewer
      const view = new URL(window.location.href).searchParams.get("view");
      if (view && /^[0-9]+$/.test(view) && view !== this.id) { this.pushed = false; this.show(view, "none"); }
      if (!view && this.isOpen()) this.close("none");
    };
    window.addEventListener("popstate", sync);
    const timelineRoot = $("#timeline");
    if (timelineRoot) timelineRoot.addEventListener("filled", () => { if (this.isOpen()) this.buttons(); });
    sync();
  },
};

// --- the map: every photo with a GPS position, in clusters, over country outlines shipped with the app -------
// (Leaflet, supercluster and Natural Earth's outlines are vendored: no CDN, no tile server.)
function countText(n) { return n >= 10000 ? `${Math.round(n / 1000)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(n); }

function unwrapped(collection) {
  // rings that cross the 180th meridian (Russia's east, Fiji, Antarctica) go on past 180 degrees instead of back
  // across the whole map (which draws bands from one edge of the world to the other)
  for (const feature of collection.features) {
    const g = feature.geometry;
    const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
    for (const ring of polygons.flat()) {
      if (ring.some(([lon]) => lon > 150) && ring.some(([lon]) => lon < -150)) ring.forEach((p) => { if (p[0] < 0) p[0] += 360; });
    }
  }
  return collection;
}

async function photoMap() {
  const box = $("#map"), count = $("#map-count"), here = $("#map-here");
  const filters = new URLSearchParams(box.dataset.filters);
  const map = L.map(box, { worldCopyJump: true, minZoom: 1, maxZoom: 18, attributionControl: false })
    .setView([20, 0], 2);
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  try {
    const outlines = await api("/static/vendor/countries-110m.json");
    L.geoJSON(unwrapped(topojson.feature(outlines, outlines.objects.countries)), { interactive: false, style: {
      color: dark ? "#555" : "#a8a29e", weight: 0.7, fillColor: dark ? "#2a2a2e" : "#ece8df", fillOpacity: 1 } }).addTo(map);
  } catch (e) { message(e.message, true); }
  let body;
  try { body = await api(`/api/v1/places?${filters}`); } catch (e) { count.textContent = e.message; return; }
  const n = body.ids.length;
  count.textContent = n ? `${n.toLocaleString()} photo(s) with a place${box.dataset.filters ? " that pass the filters" : ""}.`
    : `No photos with a GPS position${box.dataset.filters ? " pass these filters" : " yet"}.`;
  box.dataset.points = n;
  const points = body.ids.map((id, i) => ({ type: "Feature", properties: { id },
                                           geometry: { type: "Point", coordinates: [body.lon[i], body.lat[i]] } }));
  const clusters = new Supercluster({ radius: 50, maxZoom: 17 }).load(points);
  const layer = L.layerGroup().addTo(map);
  const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2563eb";

  function draw() {  // the clusters in view (a few hundred elements at most, whatever the library's size)
    const b = map.getBounds();
    const whole = b.getEast() - b.getWest() >= 360;
    const bbox = [whole ? -180 : b.getWest(), Math.max(-85, b.getSouth()), whole ? 180 : b.getEast(), Math.min(85, b.getNorth())];
    layer.clearLayers();
    for (const c of clusters.getClusters(bbox, Math.round(map.getZoom()))) {
      const [lon, lat] = c.geometry.coordinates;
      if (c.properties.cluster) {
        const size = Math.round(26 + Math.min(26, 3 * Math.log2(c.properties.point_count)));
        const marker = L.marker([lat, lon], { title: `${c.properties.point_count} photos`, icon: L.divIcon(
          { className: "cluster", html: `<span>${countText(c.properties.point_count)}</span>`, iconSize: [size, size] }) });
        marker.on("click", () => map.setView([lat, lon], Math.min(18, clusters.getClusterExpansionZoom(c.properties.cluster_id))));
        layer.addLayer(marker);
      } else {
        const dot = L.circleMarker([lat, lon], { radius: 8, color: "#fff", weight: 2, fillColor: accent, fillOpacity: 1 });
        dot.on("click", () => viewer.show(c.properties.id, "push"));
        dot.bindTooltip(`photo ${c.properties.id}`);
        layer.addLayer(dot);
      }
    }
    // the view as a filter: the circle around its centre that holds it, with the filters already in force
    const centre = map.getCenter().wrap(), km = map.getCenter().distanceTo(b.getNorthEast()) / 1000;
    const params = new URLSearchParams(filters);
    params.set("near", `${centre.lat.toFixed(5)},${centre.lng.toFixed(5)},${Math.min(20040, Math.max(0.01, km)).toPrecision(3)}`);
    here.href = `/?${params}`;
    here.hidden = !n;
    box.dataset.drawn = String(Number(box.dataset.drawn || 0) + 1);
  }
  map.on("moveend", draw);
  if (n) {
    const edge = (values, pick) => values.reduce((a, b) => pick(a, b));  // no spread: 100k arguments overflow
    map.fitBounds([[edge(body.lat, Math.min), edge(body.lon, Math.min)], [edge(body.lat, Math.max), edge(body.lon, Math.max)]],
                  { padding: [30, 30], maxZoom: 12, animate: false });
  }
  draw();
  box.dataset.ready = "true";  // drawn where it stays (no animation running): clicks land
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
      if (!typedBack(`${warnings.join(" ")}\n\nType ${chosen.length} to ${verb} ${chosen.length} group(s).`, chosen.length)) {
        message("Not confirmed: nothing was changed.", true);
        return;
      }
    }
    const body = { action, groups: chosen, keep: [...keep.values()], tier: tiers(), yes: Boolean(ask) };
    try {
      const done = await postJson("/api/v1/dups/actions", body);
      message(`Done: ${done.done.length} file(s) ${action === "move" ? "moved aside" : "linked"}. Undo puts them back.` +
              notDone(done.problems), done.problems.length > 0);
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
  if ($("#timeline")) { timeline(); selection(); }
}
viewer.start();
if (page === "dups") duplicates();
if (page === "map") photoMap();
if (page === "status") rescan();
keyboard();
