// lookalike web page: pick a photo (drop, paste, file, camera), optionally draw a region or pick a
// detected object, see the most similar products. "Find people" mode: a selfie finds the photos
// that person is in (pick the face when the selfie has several). Plain DOM, no build step.
// Every value from the server is inserted with textContent (never innerHTML).
"use strict";

const MAX_SIDE = 1600; // larger photos are downscaled in the browser before upload (phones: 12 MP)
const MAX_PLAIN_BYTES = 3 * 1024 * 1024;
const MIN_REGION = 0.02; // a drag smaller than this fraction of the photo is a click

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
};
// Link `a` to `href` in a new tab that learns nothing of this page.
const newTab = (a, href) => {
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
};

const state = {
  person: null, // people view: the person whose photos are shown
  photo: null, // Blob sent to the server (maybe downscaled); the preview shows exactly this
  photoUrl: null,
  imageUrl: null, // the query photo given as an http(s) URL (the server downloads it), or null
  region: null, // [x1, y1, x2, y2] as fractions of the photo, or null for the whole photo
  objects: [], // detected objects from the last whole-photo search: {box (fractions), label, score}
  selectedObject: -1,
  context: null, // null (photo search) | {kind: "similar", id, title} | {kind: "text", text}
  //               | {kind: "recommend", positive: [{id, title}], negative: [{id, title}]}
  filters: {}, // field -> [values] | {gte, lte} | bool
  fields: {},
  seq: 0,
  abort: null,
  mode: "products", // "products" | "people"
  faces: [], // people mode: faces of the selfie {number, box (fractions)}
  face: null, // people mode: the face number chosen, or null (the only face)
  reveal: false, // a new photo's results are to be scrolled into view (phones)
};

const PEOPLE_K = 50;

// -- start-up -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  wireInputs();
  wireStage();
  wireModes();
  wirePeople();
  loadIndexInfo();
  watchJobs();
  wireUrlQuery();
  restoreFromHash();
  window.addEventListener("hashchange", restoreFromHash); // a shared link pasted into this tab
});

const hasPhoto = () => Boolean(state.photo || state.imageUrl);

// -- modes ----------------------------------------------------------------------------------------

function wireModes() {
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); });
  }
}

function setMode(mode) {
  state.mode = mode;
  const people = mode === "people";
  document.body.classList.toggle("people-mode", people);
  $("dz-title").textContent = people ? "Find a person by selfie" : "Find a product by photo";
  document.title = people ? "lookalike · find people" : "lookalike · find it by photo";
  state.context = null;
  state.region = null;
  state.objects = [];
  state.selectedObject = -1;
  state.faces = [];
  state.face = null;
  hideError();
  renderContext();
  $("results-title").textContent = people ? "Photos of this person" : "Matches";
  $("people-bar").hidden = true;
  $("empty").firstElementChild.textContent = people
    ? "The photos this person is in will appear here, best match first."
    : "Your matches will appear here, most similar first.";
  drawOverlay();
  loadIndexInfo();
  if (state.photo) search();
  else clearResults();
}

async function loadIndexInfo() {
  if (state.mode === "people") {
    $("index-info").textContent = "";
    try {
      const faces = await api("/api/faces/stats");
      $("index-info").textContent = `${Number(faces.faces || 0).toLocaleString()} faces in ${Number(faces.photos || 0).toLocaleString()} photos`;
    } catch (err) {
      showError(err.message);
    }
    return;
  }
  let stats;
  try {
    stats = await api("/api/stats");
  } catch (err) {
    showError(err.message);
    return;
  }
  if (!Number(stats.items || 0) && Number(stats.faces || 0)) {
    // An index of faces only (`lookalike faces index`): the page opens in "Find people".
    document.querySelector(".modes").hidden = false;
    const radio = document.querySelector('input[name="mode"][value="people"]');
    if (radio) radio.checked = true;
    setMode("people");
    return;
  }
  const items = Number(stats.items || 0).toLocaleString();
  $("index-info").textContent = `${items} products · ${stats.embedder}`;
  // "Find people" only where the index has faces (`lookalike faces index`).
  document.querySelector(".modes").hidden = !Number(stats.faces || 0);
  state.fields = stats.fields || {};
  await buildFilters(state.fields);
}

function wireInputs() {
  for (const id of ["file-input", "camera-input"]) {
    $(id).addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      if (file) usePhoto(file);
      e.target.value = ""; // choosing the same file again still fires `change`
    });
  }
  document.addEventListener("paste", (e) => {
    const items = (e.clipboardData && e.clipboardData.items) || [];
    for (const item of items) {
      if (item.kind === "file" && item.type.startsWith("image/")) {
        e.preventDefault();
        usePhoto(item.getAsFile());
        return;
      }
    }
    // A pasted image URL (not into a text box): the server downloads and searches it.
    const typing = e.target && e.target.closest && e.target.closest("input, textarea");
    const text = e.clipboardData ? e.clipboardData.getData("text").trim() : "";
    if (!typing && state.mode === "products" && /^https?:\/\/\S+$/i.test(text)) {
      e.preventDefault();
      usePhotoUrl(text);
    }
  });
  // Drop anywhere on the page; the drop zone lights up while a file is dragged over the window.
  let depth = 0;
  window.addEventListener("dragenter", (e) => {
    if (hasFiles(e)) { depth += 1; document.body.classList.add("dragover"); }
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove("dragover");
  });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragover");
    const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/")) || e.dataTransfer.files[0];
    if (file) usePhoto(file);
  });
  $("new-photo").addEventListener("click", () => $("file-input").click());
  $("clear-region").addEventListener("click", () => { setRegion(null); search(); });
  $("context-clear").addEventListener("click", () => {
    state.context = null;
    renderContext();
    if (hasPhoto()) search();
    else { clearResults(); writeHash(); }
  });
  for (const radio of document.querySelectorAll('input[name="k"]')) {
    radio.addEventListener("change", () => rerun());
  }
  $("refine-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("refine").addEventListener("change", () => { if (hasPhoto() && !state.context) search(); });
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text-query").value.trim();
    if (!text) return;
    state.context = { kind: "text", text };
    renderContext();
    search();
  });
}

function hasFiles(e) {
  return e.dataTransfer && [...(e.dataTransfer.types || [])].includes("Files");
}

// -- the photo ------------------------------------------------------------------------------------

// A new query photo: what was found on the previous one is forgotten.
function newQueryPhoto() {
  state.objects = [];
  state.selectedObject = -1;
  state.faces = [];
  state.face = null;
  state.context = null;
  renderContext();
  state.reveal = true; // on a phone, bring the results into view once they arrive
}

async function usePhoto(file) {
  hideError();
  const photo = await downscale(file);
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photo = photo;
  state.imageUrl = null;
  state.photoUrl = URL.createObjectURL(photo);
  state.region = null;
  newQueryPhoto();
  const img = $("preview-img");
  // No broken-image icon: a photo this browser cannot show (HEIC) is still searched; a file that
  // is no photo at all is refused by the server, and the error says so.
  img.onerror = () => { img.hidden = true; $("hint").textContent = "This browser cannot show the photo, but it is searched as a whole."; };
  img.onload = () => { img.hidden = false; $("hint").textContent = defaultHint(); drawOverlay(); };
  img.src = state.photoUrl;
  $("dropzone").hidden = true;
  $("preview").hidden = false;
  drawOverlay();
  search();
}

function defaultHint() {
  return state.mode === "people"
    ? "The face searched is framed in green."
    : "Drag on the photo to search just one part of it.";
}

// Big photos (phone cameras) are scaled to MAX_SIDE in the browser: a faster upload, and the
// server would reduce them anyway. The canvas holds the pixels as displayed (EXIF rotation
// applied), so the preview, the region and the server all see the same picture.
async function downscale(file) {
  if (typeof createImageBitmap !== "function") return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (_) {
    return file; // not decodable here (HEIC in Chrome, or not an image): the server says why
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const plain = ["image/jpeg", "image/png", "image/webp"].includes(file.type);
  if (scale === 1 && plain && file.size <= MAX_PLAIN_BYTES) {
    bitmap.close();
    return file;
  }
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  return blob || file;
}

// -- region drawing and detected objects ---------------------------------------------------------

function wireStage() {
  const stage = $("stage");
  let start = null;
  let moved = false;
  const point = (e) => {
    const r = $("preview-img").getBoundingClientRect();
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  };
  stage.addEventListener("pointerdown", (e) => {
    if (!state.photo || e.button > 0) return;
    if (state.mode === "people") {
      const [x, y] = point(e);
      const hit = smallestAt(state.faces, x, y);
      if (hit >= 0) { e.preventDefault(); chooseFace(state.faces[hit].number); }
      return;
    }
    e.preventDefault();
    stage.setPointerCapture(e.pointerId);
    start = point(e);
    moved = false;
  });
  stage.addEventListener("pointermove", (e) => {
    if (!start) return;
    const [x, y] = point(e);
    const box = ordered([start[0], start[1], x, y]);
    if (box[2] - box[0] >= MIN_REGION || box[3] - box[1] >= MIN_REGION) moved = true;
    if (moved) drawRegion(box, true);
  });
  const finish = (e) => {
    if (!start) return;
    const [x, y] = point(e);
    const box = ordered([start[0], start[1], x, y]);
    start = null;
    if (moved && box[2] - box[0] >= MIN_REGION && box[3] - box[1] >= MIN_REGION) {
      state.selectedObject = -1;
      setRegion(box);
      search();
      return;
    }
    // A click: select the smallest detected object under the pointer, if any.
    const hit = smallestAt(state.objects, x, y);
    if (hit >= 0) selectObject(hit);
    else drawOverlay();
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", () => { start = null; drawOverlay(); });
  window.addEventListener("resize", () => drawOverlay());
}

// The index of the smallest box of `items` (faces or detected objects) under (x, y), else -1.
function smallestAt(items, x, y) {
  let best = -1;
  let bestArea = Infinity;
  items.forEach((item, i) => {
    const [x1, y1, x2, y2] = item.box;
    const area = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < bestArea) { best = i; bestArea = area; }
  });
  return best;
}

function chooseFace(number) {
  state.face = number;
  drawOverlay();
  search();
}

function selectObject(i) {
  state.selectedObject = i;
  setRegion(state.objects[i].box);
  search();
}

function setRegion(box) {
  state.region = box;
  $("clear-region").disabled = !box;
  drawOverlay();
}

function drawOverlay() {
  const overlay = $("overlay");
  overlay.replaceChildren();
  if (state.mode === "people") {
    drawFaces(overlay);
    return;
  }
  state.objects.forEach((o, i) => {
    const b = el("button", "objbox" + (i === state.selectedObject ? " selected" : ""));
    b.type = "button";
    b.setAttribute("aria-label", `Search the ${o.label || "object"} only`);
    place(b, o.box);
    if (o.label) b.append(el("span", "tag", o.label));
    // Keyboard users select with Enter/Space; pointer clicks go through the stage handler.
    b.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectObject(i); }
    });
    overlay.append(b);
  });
  if (state.region) drawRegion(state.region, false);
}

// The selfie's faces: numbered boxes; the one searched is green. A click (stage handler) or
// Enter/Space picks a face.
function drawFaces(overlay) {
  const several = state.faces.length > 1;
  for (const f of state.faces) {
    const chosen = state.face === f.number || (!several && state.face === null);
    const b = el("button", "faces-box" + (chosen ? " selected" : ""));
    b.type = "button";
    b.dataset.face = String(f.number);
    b.setAttribute("aria-label", `Look for face ${f.number + 1}`);
    b.setAttribute("aria-pressed", String(chosen));
    place(b, f.box);
    if (several) b.append(el("span", "tag", String(f.number + 1)));
    b.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); chooseFace(f.number); }
    });
    overlay.append(b);
  }
}

// The region: a frame, and four shades dimming what lies outside it.
function drawRegion(box, drawing) {
  const overlay = $("overlay");
  let region = overlay.querySelector(".region");
  if (!region) {
    for (let i = 0; i < 4; i++) overlay.append(el("div", "shade"));
    region = el("div", "region");
    overlay.append(region);
  }
  region.classList.toggle("drawing", drawing);
  place(region, box);
  const [x1, y1, x2, y2] = box;
  const shades = overlay.querySelectorAll(".shade");
  place(shades[0], [0, 0, 1, y1]);
  place(shades[1], [0, y2, 1, 1]);
  place(shades[2], [0, y1, x1, y2]);
  place(shades[3], [x2, y1, 1, y2]);
}

function place(node, [x1, y1, x2, y2]) {
  node.style.left = `${x1 * 100}%`;
  node.style.top = `${y1 * 100}%`;
  node.style.width = `${(x2 - x1) * 100}%`;
  node.style.height = `${(y2 - y1) * 100}%`;
}

const clamp = (v) => Math.min(1, Math.max(0, v));
const ordered = ([a, b, c, d]) => [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)];

// -- filters --------------------------------------------------------------------------------------

// Attributes the engine computes from the photos themselves (not catalogue fields). Shoppers
// see the catalogue's own fields and the colours; the ImageNet classes ("abaya", "lab coat") and
// the detector's labels ("person") are internal: the API and `lookalike facets` still have them.
const AUTO_FIELDS = { colours: "Colour (from the photos)" };
const INTERNAL_FIELDS = new Set(["classes", "labels"]);
const KIND_ORDER = { keyword: 0, float: 1, integer: 1, bool: 2 };

async function buildFilters(fields) {
  const box = $("filters");
  box.replaceChildren();
  // Catalogue fields first (text, then numbers, then yes/no), the automatic attributes last.
  const order = ([name, kind]) => [name in AUTO_FIELDS ? 1 : 0, KIND_ORDER[kind] ?? 3, name];
  const sorted = Object.entries(fields).filter(([name]) => !INTERNAL_FIELDS.has(name)).sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    return x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : 1);
  });
  for (const [name, kind] of sorted) {
    try {
      if (kind === "keyword") await keywordFilter(box, name);
      else if (kind === "float" || kind === "integer") rangeFilter(box, name);
      else if (kind === "bool") boolFilter(box, name);
    } catch (_) {
      // a field without usable facets is simply not offered as a filter
    }
  }
  // Open on wide screens; on a phone the filters fold away so the results stay close.
  syncFilterControls();
  const details = $("filters-box");
  details.hidden = !box.childElementCount;
  details.open = window.matchMedia("(min-width: 960px)").matches;
}

const pretty = (name) => AUTO_FIELDS[name] || name.replace(/[_-]+/g, " ");

async function keywordFilter(box, name) {
  const facets = await api(`/api/facets?field=${encodeURIComponent(name)}&limit=60`);
  const values = facets.values || [];
  // Fields whose every value is unique (titles, ids) are not useful filters.
  if (values.length < 2 || Math.max(...values.map((v) => v.count)) <= 1) return;
  const wrap = filterBox(name);
  if (values.length <= 12) {
    const chips = el("div", "chips");
    for (const { value, count } of values) {
      const chip = el("button", "chip", String(value));
      chip.type = "button";
      chip.setAttribute("aria-pressed", "false");
      chip.append(el("span", "n", String(count)));
      chip.addEventListener("click", () => {
        const on = chip.getAttribute("aria-pressed") !== "true";
        chip.setAttribute("aria-pressed", String(on));
        const chosen = new Set(state.filters[name] || []);
        if (on) chosen.add(value); else chosen.delete(value);
        setFilter(name, chosen.size ? [...chosen] : null);
      });
      chips.append(chip);
    }
    wrap.append(chips);
  } else {
    const select = el("select");
    select.setAttribute("aria-label", pretty(name));
    select.append(new Option("Any", ""));
    for (const { value, count } of values) select.append(new Option(`${value} (${count})`, String(value)));
    select.addEventListener("change", () => {
      const v = values.find((x) => String(x.value) === select.value);
      setFilter(name, v ? [v.value] : null);
    });
    wrap.append(select);
  }
  box.append(wrap);
}

// One filter's box: its field's name as the label; the control follows.
function filterBox(name) {
  const wrap = el("div", "filter");
  wrap.dataset.field = name;
  wrap.append(el("span", "filter-label", pretty(name)));
  return wrap;
}

function rangeFilter(box, name) {
  const wrap = filterBox(name);
  const row = el("div", "range");
  const lo = el("input");
  const hi = el("input");
  for (const [input, label] of [[lo, "min"], [hi, "max"]]) {
    input.type = "number";
    input.inputMode = "decimal";
    input.step = "any";
    input.placeholder = label;
    input.setAttribute("aria-label", `${pretty(name)} ${label}`);
  }
  let timer = 0;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const range = {};
      if (lo.value !== "") range.gte = Number(lo.value);
      if (hi.value !== "") range.lte = Number(hi.value);
      setFilter(name, Object.keys(range).length ? range : null);
    }, 350);
  };
  lo.addEventListener("input", changed);
  hi.addEventListener("input", changed);
  row.append(lo, el("span", "", "to"), hi);
  wrap.append(row);
  box.append(wrap);
}

function boolFilter(box, name) {
  const wrap = filterBox(name);
  const select = el("select");
  select.append(new Option("Any", ""), new Option("Yes", "true"), new Option("No", "false"));
  select.addEventListener("change", () => setFilter(name, select.value === "" ? null : select.value === "true"));
  wrap.append(select);
  box.append(wrap);
}

function setFilter(name, value) {
  if (value === null) delete state.filters[name];
  else state.filters[name] = value;
  const n = Object.keys(state.filters).length;
  $("filters-count").textContent = n ? String(n) : "";
  rerun();
}

// -- searching ------------------------------------------------------------------------------------

function k() {
  const checked = document.querySelector('input[name="k"]:checked');
  return checked ? Number(checked.value) : 10;
}

function rerun() {
  if (hasPhoto() || state.context) search();
}

async function search() {
  const seq = ++state.seq;
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  hideError();
  setBusy(true);
  const filters = Object.keys(state.filters).length ? JSON.stringify(state.filters) : null;
  let path;
  let init;
  const ctx = state.context;
  if (state.mode === "people") {
    searchPeople(seq, abort);
    return;
  }
  if (ctx && ctx.kind === "similar") {
    const params = new URLSearchParams({ k: String(k()) });
    if (filters) params.set("filters", filters);
    path = `/api/similar/${encodeURIComponent(ctx.id)}?${params}`;
    init = {};
  } else if (ctx && ctx.kind === "recommend") {
    path = "/api/recommend";
    const body = { positive: ctx.positive.map((x) => x.id), negative: ctx.negative.map((x) => x.id), k: k() };
    if (filters) body.filters = state.filters;
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  } else if (ctx && ctx.kind === "text") {
    path = "/api/search/text";
    const body = { text: ctx.text, k: k() };
    if (filters) body.filters = state.filters;
    init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  } else if (hasPhoto()) {
    const form = new FormData();
    if (state.photo) form.append("photo", state.photo, state.photo.name || "photo.jpg");
    else form.append("url", state.imageUrl);
    form.append("k", String(k()));
    if (state.region) {
      form.append("box", state.region.map((v) => v.toFixed(5)).join(","));
      form.append("box_units", "fraction");
    }
    if (filters) form.append("filters", filters);
    const words = $("refine").value.trim();
    if (words) form.append("text", words);
    path = "/api/search";
    init = { method: "POST", body: form };
  } else {
    setBusy(false);
    return;
  }
  writeHash();
  try {
    const result = await api(path, { ...init, signal: abort.signal });
    if (seq !== state.seq) return; // a newer search has started
    if (!ctx && !state.region) takeObjects(result);
    renderResults(result);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    failed(err);
  }
}

// A failed search: the previous results go (they answered another question), the reason shows
// where they were, and a file that is no usable photo is put away.
function failed(err) {
  $("results").replaceChildren();
  $("empty").hidden = true;
  let message = err.message;
  if (err.status === 415 || err.status === 422) {
    message = err.status === 415
      ? `That file is not a photo (${err.message}). Choose a JPEG, PNG, WebP or HEIC photo.`
      : `That photo cannot be read (${err.message}). Try another one.`;
    state.photo = null;
    state.imageUrl = null;
    state.objects = [];
    state.faces = [];
    $("preview").hidden = true;
    $("dropzone").hidden = false;
  }
  showError(message);
  setBusy(false, "");
  reveal();
}

// On a phone the results sit below the photo: scroll them into view after a new photo.
function reveal() {
  if (!state.reveal) return;
  state.reveal = false;
  if (!window.matchMedia("(max-width: 959px)").matches) return;
  const head = document.querySelector(".results-head");
  if (head.getBoundingClientRect().top < window.innerHeight * 0.5) return;
  const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  head.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
}

async function searchPeople(seq, abort) {
  if (!state.photo) {
    setBusy(false);
    return;
  }
  const form = new FormData();
  form.append("photo", state.photo, state.photo.name || "selfie.jpg");
  form.append("k", String(PEOPLE_K));
  if (state.face !== null) form.append("face", String(state.face));
  try {
    const result = await api("/api/faces/search", { method: "POST", body: form, signal: abort.signal });
    if (seq !== state.seq) return;
    takeFaces(result.query.faces, result.query);
    state.face = state.faces.length > 1 ? result.query.face.number : null;
    drawOverlay();
    $("hint").textContent = state.faces.length > 1
      ? "Looking for the face in green. Tap another face to look for that person."
      : defaultHint();
    renderPeople(result);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    if (err.status === 409 && err.body && Array.isArray(err.body.faces)) {
      // Several faces and none chosen yet: show them and let the user pick one.
      takeFaces(err.body.faces, err.body.query);
      state.face = null;
      drawOverlay();
      $("results").replaceChildren();
      $("empty").hidden = false;
      $("empty").firstElementChild.textContent = `${state.faces.length} faces in this photo: tap the person to look for.`;
      $("hint").textContent = "Tap a numbered face to find the photos of that person.";
      setBusy(false, "Pick a face");
      return;
    }
    state.faces = [];
    drawOverlay();
    failed(err);
  }
}

// -- people: the faces of the index grouped into people, named, with their photos ----------------

function wirePeople() {
  $("people-browse").addEventListener("click", (e) => { e.stopPropagation(); browsePeople(); });
  $("people-back").addEventListener("click", () => browsePeople());
  $("people-rename").addEventListener("click", () => renamePerson());
}

async function browsePeople() {
  state.seq++; // a search still running must not overwrite this view
  state.person = null;
  hideError();
  $("people-bar").hidden = true;
  setBusy(true);
  try {
    const body = await api("/api/faces/people");
    const people = body.people || [];
    $("results-title").textContent = "People";
    const list = $("results");
    list.replaceChildren(...people.map(peopleCard));
    $("empty").hidden = people.length > 0;
    if (!people.length) $("empty").firstElementChild.textContent = "No faces are indexed yet.";
    setBusy(false, `${people.length} ${people.length === 1 ? "person" : "people"}`);
  } catch (err) {
    showError(err.message);
    setBusy(false, "");
  }
}

function personLabel(p) {
  return p.name || `Person ${p.person}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// One person: their face, name and counts; a click shows their photos.
function peopleCard(p) {
  const li = el("li", "card people-card");
  li.dataset.person = p.person;
  const open = el("button", "people-open");
  open.type = "button";
  open.setAttribute("aria-label", `Photos of ${personLabel(p)}`);
  const img = el("img");
  img.src = p.cover.face_url;
  img.alt = personLabel(p);
  img.loading = "lazy";
  open.append(img);
  open.addEventListener("click", () => showPerson(p.person));
  const body = el("div", "card-body");
  body.append(el("h3", "card-title", personLabel(p)));
  body.append(el("div", "meta", `${plural(p.photos, "photo")} · ${plural(p.faces, "face")}`));
  li.append(open, body);
  return li;
}

async function showPerson(id) {
  hideError();
  setBusy(true);
  try {
    const body = await api(`/api/faces/people/${encodeURIComponent(id)}/photos`);
    state.person = body;
    $("results-title").textContent = personLabel(body);
    $("people-bar").hidden = false;
    $("results").replaceChildren(...body.photos.map(personPhotoCard));
    $("empty").hidden = body.photos.length > 0;
    setBusy(false, plural(body.photos.length, "photo"));
  } catch (err) {
    showError(err.message);
    setBusy(false, "");
  }
}

// A photo of the person shown: the photo, and the face as the index found it.
function personPhotoCard(x) {
  const li = el("li", "card person-photo");
  li.dataset.photo = x.name;
  const thumb = el("div", "thumb");
  const img = el("img");
  img.src = x.thumbnail_url || x.face_url;
  img.alt = x.name;
  img.loading = "lazy";
  const face = el("img", "person-face");
  face.src = x.face_url;
  face.alt = "";
  thumb.append(img, face);
  const body = el("div", "card-body");
  const title = el("h3", "card-title", x.name);
  title.title = x.photo;
  body.append(title);
  if (x.image_url) body.append(newTab(el("a", "btn small more", "Open photo"), x.image_url));
  li.append(thumb, body);
  return li;
}

async function renamePerson() {
  const p = state.person;
  if (!p) return;
  const name = window.prompt("Name this person", p.name || "");
  if (name === null) return;
  const send = () => api(`/api/faces/people/${encodeURIComponent(p.person)}/name`, {
    method: "POST", headers: writeHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({ name }),
  });
  try {
    try {
      await send();
    } catch (err) {
      // A server with --api-key: ask for it once and keep it for this tab only. Without a key
      // configured the server answers 403 with how to turn writes on, shown as it is.
      if (err.status !== 401) throw err;
      const key = window.prompt("This server needs its API key (X-API-Key) to name people");
      if (!key) return;
      sessionStorage.setItem(API_KEY_ITEM, key);
      await send();
    }
    await showPerson(p.person);
  } catch (err) {
    showError(err.message);
  }
}

const API_KEY_ITEM = "lookalike-api-key";

// Headers of a write: the API key the operator typed in this tab, if any (never a cookie, so a
// cross-site page cannot write with it).
function writeHeaders(headers) {
  const key = sessionStorage.getItem(API_KEY_ITEM);
  return key ? { ...headers, "X-API-Key": key } : headers;
}

// Face boxes come in pixels of the uploaded photo; the page keeps them as fractions.
function takeFaces(faces, size) {
  const w = size && size.width;
  const h = size && size.height;
  state.faces = (faces || []).filter(() => w && h).map((f) => ({
    number: f.number,
    box: [f.box[0] / w, f.box[1] / h, f.box[2] / w, f.box[3] / h].map(clamp),
  }));
}

function renderPeople(result) {
  $("people-bar").hidden = true;
  $("results-title").textContent = "Photos of this person";
  const list = $("results");
  list.replaceChildren();
  const matches = result.matches || [];
  $("empty").hidden = matches.length > 0;
  if (!matches.length) {
    $("empty").firstElementChild.textContent = "This person is in none of the indexed photos.";
  }
  for (const m of matches) list.append(personCard(m, result));
  const ms = result.timings_ms && result.timings_ms.total;
  const took = ms === undefined ? "" : ` · ${Math.round(ms)} ms`;
  const maybe = matches.filter((m) => m.tier === "maybe").length;
  const tiers = maybe ? ` (${matches.length - maybe} you, ${maybe} maybe you)` : "";
  setBusy(false, `${matches.length} photo${matches.length === 1 ? "" : "s"}${tiers}${took}`);
  reveal();
}

// A photo the person is in, the matching face framed. The photo is fitted (contained) in the
// square thumbnail by hand, so the frame's percentages land on the face exactly. "Maybe you"
// matches (farther than the "same person" threshold) are labelled and drawn muted.
function personCard(m, result) {
  const threshold = result.threshold;
  const outer = Math.max(threshold, result.maybe_threshold || threshold);
  const maybe = m.tier === "maybe";
  const li = el("li", "card person-card" + (maybe ? " maybe" : ""));
  li.dataset.photo = m.name;
  li.dataset.tier = m.tier || "you";
  const thumb = el("div", "thumb");
  const inner = el("div", "pinner");
  const frame = el("div", "pframe");
  const img = cardImg(m.rank, m.name, m.thumbnail_url);
  frame.append(img);
  const size = m.image_size;
  if (size && size[0] > 0 && size[1] > 0) {
    const aspect = size[0] / size[1];
    const [fw, fh] = aspect >= 1 ? [1, 1 / aspect] : [aspect, 1];
    place(frame, [(1 - fw) / 2, (1 - fh) / 2, (1 + fw) / 2, (1 + fh) / 2]);
    const box = el("div", "pface");
    place(box, [m.box[0] / size[0], m.box[1] / size[1], m.box[2] / size[0], m.box[3] / size[1]].map(clamp));
    frame.append(box);
  } else {
    place(frame, [0, 0, 1, 1]);
  }
  inner.append(frame);
  const badge = el("span", "badge dist", `${maybe ? "maybe you" : "you"} · ${m.distance.toFixed(2)}`);
  badge.title = `distance ${m.distance.toFixed(3)} (you up to ${threshold}, maybe you up to ${outer}); cosine similarity ${m.similarity.toFixed(3)}`;
  thumb.append(inner, badge, el("span", "rank", String(m.rank)));

  const body = el("div", "card-body");
  const title = el("h3", "card-title", m.name);
  title.title = m.photo;
  const meta = el("div", "meta");
  meta.append(el("span", "item-id", `similarity ${(m.similarity * 100).toFixed(1)} %`));
  // Closeness: full at distance 0, empty at the outer ("maybe you") threshold.
  const bar = el("div", "simbar");
  const fill = el("span");
  fill.style.width = `${Math.max(0, Math.min(100, 100 * (1 - m.distance / outer)))}%`;
  bar.append(fill);
  body.append(title, meta, bar);
  if (m.image_url) body.append(newTab(el("a", "btn small more", "Open photo"), m.image_url));
  li.append(thumb, body);
  return li;
}

// Objects come in pixels of the decoded photo; the page keeps them as fractions.
function takeObjects(result) {
  const q = result.query;
  state.objects = (result.objects || [])
    .filter(() => q && q.width && q.height)
    .map((o) => ({
      box: [o.box[0] / q.width, o.box[1] / q.height, o.box[2] / q.width, o.box[3] / q.height].map(clamp),
      label: o.label,
      score: o.score,
    }));
  state.selectedObject = -1;
  drawOverlay();
  if (state.objects.length) {
    $("hint").textContent = "Tap a box to search that object, or drag to draw your own region.";
  }
}

function renderResults(result) {
  const list = $("results");
  list.replaceChildren();
  const hits = result.results || [];
  $("empty").hidden = hits.length > 0;
  if (!hits.length) $("empty").firstElementChild.textContent = "No product matches these filters.";
  for (const hit of hits) list.append(card(hit, result.score_kind));
  const ms = result.timings_ms && result.timings_ms.total;
  const where = state.region && !state.context ? " for the region" : "";
  const took = ms === undefined ? "" : ms < 1 ? " · <1 ms" : ` · ${Math.round(ms)} ms`;
  const none = result.match === "no close match" ? "No close match in this catalogue · nearest " : "";
  setBusy(false, `${none}${hits.length} result${hits.length === 1 ? "" : "s"}${where}${took}`);
  reveal();
}

// A card's picture: the first rows load at once, the rest as they come into view.
function cardImg(rank, alt, src) {
  const img = el("img");
  img.loading = rank > 12 ? "lazy" : "eager";
  img.decoding = "async";
  img.alt = alt;
  if (src) img.src = src;
  return img;
}

const MATCH_BADGES = {
  "same product": { cls: "same", text: () => "Same product" },
  similar: { cls: "mid", text: (pct) => (pct === null ? "Similar" : `Similar · ${pct}%`) },
  "no close match": { cls: "low", text: () => "Not close" },
};

function card(hit, scoreKind) {
  const li = el("li", "card");
  li.dataset.itemId = hit.item_id;
  const thumb = el("div", "thumb");
  const img = cardImg(hit.rank, hit.title, hit.thumbnail_url);
  // Similarity in percent only means something for a photo's cosine score; words (BM25) and
  // fused rankings (RRF) only order the results, so their cards show the rank alone.
  const similar = hit.similarity !== null && hit.similarity !== undefined;
  const pct = similar ? Math.round(hit.similarity) : null;
  // The index's calibrated verdict (docs/quality.md) when it has one: a shopper must tell the
  // product itself from look-alikes and from noise; the bare percentage cannot say that.
  const verdict = MATCH_BADGES[hit.match];
  const badge = verdict
    ? el("span", `badge match ${verdict.cls}`, verdict.text(pct))
    : similar
    ? el("span", "badge" + (pct >= 80 ? "" : pct >= 60 ? " mid" : " low"), `${pct}% similar`)
    : el("span", "badge rank-score", scoreKind === "bm25" ? "word match" : "best match");
  badge.title = similar
    ? `${hit.similarity.toFixed(1)} % similar (cosine ${hit.score.toFixed(3)})`
    : `${scoreKind} score ${hit.score.toFixed(3)}`;
  thumb.append(img, badge, el("span", "rank", String(hit.rank)));

  const body = el("div", "card-body");
  const title = el("h3", "card-title");
  const url = hit.fields && typeof hit.fields.url === "string" && /^https?:\/\//.test(hit.fields.url) ? hit.fields.url : null;
  if (url) {
    title.append(newTab(el("a", "", hit.title), url));
  } else {
    title.textContent = hit.title;
  }
  title.title = hit.title;
  const meta = el("div", "meta");
  // A folder item without item.json is titled by its id: saying it twice tells nothing.
  if (hit.title !== hit.item_id) meta.append(el("span", "item-id", `#${hit.item_id}`));
  if (hit.price !== null && hit.price !== undefined) meta.append(el("span", "price", money(hit.price, hit.currency)));
  const bar = el("div", "simbar");
  const fill = el("span");
  fill.style.width = `${similar ? Math.max(0, Math.min(100, hit.similarity)) : 0}%`;
  bar.append(fill);
  bar.hidden = !similar;
  const more = el("button", "btn small more", "More like this");
  more.type = "button";
  more.addEventListener("click", () => {
    const ctx = state.context;
    const me = { id: hit.item_id, title: hit.title };
    // Inside "more like these, less like those" a further example joins the others.
    state.context = ctx && ctx.kind === "recommend"
      ? { ...ctx, positive: [...ctx.positive, me] }
      : { kind: "similar", id: hit.item_id, title: hit.title };
    renderContext();
    window.scrollTo({ top: 0, behavior: "smooth" });
    search();
  });
  const less = el("button", "btn small less", "Less");
  less.type = "button";
  less.title = "Less like this: move the results away from this product";
  less.setAttribute("aria-label", "Less like this");
  less.addEventListener("click", () => lessLike(hit));
  const actions = el("div", "card-actions");
  actions.append(more, less);
  body.append(title, meta, bar, actions);
  li.append(thumb, body);
  return li;
}

function money(value, currency) {
  if (currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
    } catch (_) { /* not an ISO currency code */ }
  }
  return new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);
}

function renderContext() {
  const ctx = state.context;
  $("context").hidden = !ctx;
  if (!ctx) {
    $("results-title").textContent = state.mode === "people" ? "Photos of this person" : "Matches";
    return;
  }
  if (ctx.kind === "similar") {
    $("context-text").textContent = `More like “${ctx.title}” (#${ctx.id})`;
    $("results-title").textContent = "Similar products";
  } else if (ctx.kind === "recommend") {
    const names = (xs) => xs.map((x) => `“${x.title}”`).join(", ");
    $("context-text").textContent = `More like ${names(ctx.positive)}, less like ${names(ctx.negative)}`;
    $("results-title").textContent = "Similar products";
  } else {
    $("context-text").textContent = `Described as “${ctx.text}”`;
    $("results-title").textContent = "Matches";
  }
}

function clearResults() {
  $("results").replaceChildren();
  $("empty").hidden = false;
  setBusy(false, "");
}

// -- catalogue updates (index jobs of the server: `lookalike index` while it serves) ----------------

const JOB_POLL_MS = 4000;
const jobs = { seen: null, active: null, shownUntil: 0 }; // seen: newest job id at the last poll

async function watchJobs() {
  let list = null;
  try {
    list = await api("/api/jobs");
  } catch (_) { /* an older server, or it is restarting: try again later */ }
  if (Array.isArray(list)) showJobs(list);
  setTimeout(watchJobs, document.hidden ? JOB_POLL_MS * 4 : JOB_POLL_MS);
}

function showJobs(list) {
  const info = $("job-info");
  const active = list.find((j) => j.state === "running" || j.state === "queued");
  const newest = list[0];
  const first = jobs.seen === null;
  const changed = newest && newest.id !== jobs.seen;
  jobs.seen = newest ? newest.id : "";
  info.classList.remove("failed");
  if (active) {
    const count = active.total ? ` ${active.done.toLocaleString()} of ${active.total.toLocaleString()}` : "";
    info.textContent = active.state === "queued"
      ? "Catalogue update waiting…"
      : `Updating the catalogue: ${active.stage || "starting"}${count}…`;
    info.hidden = false;
    jobs.active = active.id;
    return;
  }
  const ended = jobs.active ? list.find((j) => j.id === jobs.active) : (!first && changed ? newest : null);
  jobs.active = null;
  if (ended) {
    const ok = ended.state === "done";
    const n = ok && ended.summary ? ended.summary.images_embedded : 0;
    info.textContent = ok
      ? `Catalogue updated: ${n.toLocaleString()} new photo${n === 1 ? "" : "s"}`
      : "Catalogue update failed";
    info.classList.toggle("failed", !ok);
    info.hidden = false;
    jobs.shownUntil = Date.now() + 8000;
    if (ok) loadIndexInfo();
  } else if (Date.now() > jobs.shownUntil) {
    info.hidden = true;
  }
}

// -- plumbing -------------------------------------------------------------------------------------

async function api(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error("Cannot reach the server. Is it still running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    const err = new Error(detail || `HTTP ${response.status}`);
    err.status = response.status;
    err.body = body;
    throw err;
  }
  return body;
}

function setBusy(busy, text) {
  $("results").classList.toggle("loading", busy);
  const status = $("status");
  status.classList.toggle("busy", busy);
  if (busy) status.textContent = "Searching…";
  else if (text !== undefined) status.textContent = text;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

// -- "less like this" (negative examples, POST /api/recommend) --------------------------------------

// The results are then "more like the examples, less like this one". The positive examples are
// those of the item search shown, or for a photo or words search its best result that is not
// this card (the API takes item ids, not a photo, as examples).
function lessLike(hit) {
  const ctx = state.context;
  const me = { id: hit.item_id, title: hit.title };
  let positive;
  let negative = [me];
  if (ctx && ctx.kind === "recommend") {
    positive = ctx.positive.filter((x) => x.id !== me.id);
    negative = [...ctx.negative.filter((x) => x.id !== me.id), me];
  } else if (ctx && ctx.kind === "similar") {
    positive = [{ id: ctx.id, title: ctx.title }];
  } else {
    const best = [...document.querySelectorAll("#results .card")]
      .map((c) => ({ id: c.dataset.itemId, title: c.querySelector(".card-title").textContent }))
      .find((x) => x.id !== me.id);
    positive = best ? [best] : [];
  }
  if (!positive.length) {
    showError("Choose “More like this” on a product first: “less like this” needs one to move from.");
    return;
  }
  state.context = { kind: "recommend", positive, negative };
  renderContext();
  window.scrollTo({ top: 0, behavior: "smooth" });
  search();
}

// -- search by image URL ---------------------------------------------------------------------------

function wireUrlQuery() {
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const url = $("url-input").value.trim();
    if (!/^https?:\/\/\S+$/i.test(url)) {
      showError("Give an image address starting with http:// or https://.");
      return;
    }
    usePhotoUrl(url);
  });
}

// The server downloads the photo (public addresses only); the preview is the browser's own copy.
function usePhotoUrl(url, region) {
  hideError();
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photo = null;
  state.photoUrl = null;
  state.imageUrl = url;
  state.region = region || null;
  $("clear-region").disabled = !state.region;
  newQueryPhoto();
  const img = $("preview-img");
  img.onerror = () => { img.hidden = true; $("hint").textContent = "This browser cannot show the photo, but the server searches it."; };
  img.onload = () => { img.hidden = false; $("hint").textContent = defaultHint(); drawOverlay(); };
  img.referrerPolicy = "no-referrer";
  img.src = url;
  $("dropzone").hidden = true;
  $("preview").hidden = false;
  drawOverlay();
  search();
}

// -- shareable page address: the query lives in the hash ----------------------------------------------
// #text=WORDS | #similar=ID | #more=ID&more=ID&less=ID | #url=IMAGE-URL[&box=x1,y1,x2,y2][&words=..]
// plus k=N and filters={JSON}. A photo from the device cannot be shared (it is not on a server).

function writeHash() {
  const params = new URLSearchParams();
  const ctx = state.context;
  if (state.mode === "people") params.set("mode", "people");
  else if (ctx && ctx.kind === "text") params.set("text", ctx.text);
  else if (ctx && ctx.kind === "similar") params.set("similar", ctx.id);
  else if (ctx && ctx.kind === "recommend") {
    for (const x of ctx.positive) params.append("more", x.id);
    for (const x of ctx.negative) params.append("less", x.id);
  } else if (state.imageUrl) {
    params.set("url", state.imageUrl);
    if (state.region) params.set("box", state.region.map((v) => v.toFixed(4)).join(","));
    const words = $("refine").value.trim();
    if (words) params.set("words", words);
  }
  if (state.mode !== "people" && params.toString()) {
    if (k() !== 10) params.set("k", String(k()));
    if (Object.keys(state.filters).length) params.set("filters", JSON.stringify(state.filters));
  }
  const hash = params.toString();
  const target = location.pathname + location.search + (hash ? `#${hash}` : "");
  if (target !== location.pathname + location.search + location.hash) history.replaceState(null, "", target);
}

function restoreFromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (![...params.keys()].length) return;
  if (params.get("mode") === "people") {
    const radio = document.querySelector('input[name="mode"][value="people"]');
    if (radio) { radio.checked = true; setMode("people"); }
    return;
  }
  const kRadio = document.querySelector(`input[name="k"][value="${Number(params.get("k")) || 10}"]`);
  if (kRadio) kRadio.checked = true;
  try {
    const filters = JSON.parse(params.get("filters") || "{}");
    state.filters = filters && typeof filters === "object" && !Array.isArray(filters) ? filters : {};
  } catch (_) {
    state.filters = {};
  }
  const n = Object.keys(state.filters).length;
  $("filters-count").textContent = n ? String(n) : "";
  syncFilterControls();
  const named = (id) => ({ id, title: id });
  if (params.get("text")) {
    $("text-query").value = params.get("text");
    state.context = { kind: "text", text: params.get("text") };
  } else if (params.get("similar")) {
    state.context = { kind: "similar", ...named(params.get("similar")) };
  } else if (params.getAll("more").length) {
    state.context = {
      kind: "recommend",
      positive: params.getAll("more").map(named),
      negative: params.getAll("less").map(named),
    };
  } else if (/^https?:\/\//i.test(params.get("url") || "")) {
    const box = (params.get("box") || "").split(",").map(Number);
    $("refine").value = params.get("words") || "";
    $("url-input").value = params.get("url");
    usePhotoUrl(params.get("url"), box.length === 4 && box.every(Number.isFinite) ? box : null);
    return;
  } else {
    return;
  }
  renderContext();
  search();
  nameExamples(state.context);
}

// An address names items by id: show their titles once the server has told them.
async function nameExamples(ctx) {
  const named = ctx.kind === "similar" ? [ctx] : ctx.kind === "recommend" ? [...ctx.positive, ...ctx.negative] : [];
  for (const x of named) {
    try {
      const item = await api(`/api/items/${encodeURIComponent(x.id)}`);
      if (item && item.title) x.title = item.title;
    } catch (_) { /* an unknown id: the search says so */ }
  }
  if (state.context === ctx) renderContext();
}

// Filter controls built before or after a restored address show its filters.
function syncFilterControls() {
  for (const wrap of document.querySelectorAll("#filters .filter")) {
    const value = state.filters[wrap.dataset.field];
    for (const chip of wrap.querySelectorAll(".chip")) {
      const label = chip.firstChild ? chip.firstChild.textContent : "";
      chip.setAttribute("aria-pressed", String(Array.isArray(value) && value.map(String).includes(label)));
    }
    const select = wrap.querySelector("select");
    if (select) select.value = Array.isArray(value) ? String(value[0]) : value === undefined ? "" : String(value);
    const [lo, hi] = wrap.querySelectorAll('input[type="number"]');
    if (lo && hi) {
      lo.value = value && value.gte !== undefined ? String(value.gte) : "";
      hi.value = value && value.lte !== undefined ? String(value.lte) : "";
    }
  }
}
