// The hoiclip web page: detect interactions in an image, browse and grow the vocabulary.
// It calls only the public API (the same one the SDKs use), with the API key when given.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = {
  key: localStorage.getItem("hoiclip-api-key") || "",
  file: null, // the image as picked (sent again for examples)
  bitmap: null,
  answer: null,
  pairs: [], // [{human, object, colour, triplets: [...]}]
  active: null, // index into pairs
  tab: "verbs",
  entries: [],
  teaching: null, // the pair being taught
  detections: 0, // requests sent so far
};

class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("X-API-Key", state.key);
  const response = await fetch(path, { ...options, headers });
  const json = (response.headers.get("content-type") || "").includes("json");
  const body = json ? await response.json() : await response.text();
  if (!response.ok) throw new Problem(response.status, json ? body : { title: body });
  return body;
}

function say(text, error = false) {
  const box = $("#message");
  box.textContent = text;
  box.classList.toggle("error", error);
  box.hidden = !text;
}

function fail(error) {
  if (error instanceof Problem && (error.status === 401 || error.status === 403)) {
    say(`${error.message}: enter the server's API key at the top right.`, true);
  } else {
    say(error.message, true);
  }
}

// --- model and packs -------------------------------------------------------------

async function loadInfo() {
  const info = await api("/info");
  $("#model").textContent = `${info.model.name} · ${info.vocabulary} · ${info.backend} on ${info.device}`;
  $("#demo-banner").hidden = info.model.trained;
  await loadPacks();
}

async function loadPacks() {
  const packs = await api("/packs");
  const select = $("#pack");
  const chosen = select.value;
  const first = select.options[0];
  select.replaceChildren(first, ...packs.map((pack) => Object.assign(document.createElement("option"), {
    value: pack.name,
    textContent: `${pack.name} (${pack.interactions})`,
  })));
  select.value = packs.some((p) => p.name === chosen) ? chosen : "";
}

// --- detection -------------------------------------------------------------------

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function detect() {
  if (!state.file) return;
  const query = new URLSearchParams({ top_k: "100", explain: "true" });
  if ($("#pack").value) query.set("pack", $("#pack").value);
  if ($("#tfe").checked) query.set("training_free_enhancement", "true");
  const form = new FormData();
  form.append("image", state.file);
  // Only the latest request's answer is shown (an older one may arrive after it).
  const ticket = ++state.detections;
  $("#status").textContent = "detecting…";
  let answer = null;
  try {
    answer = await api(`/detect?${query}`, { method: "POST", body: form });
  } catch (error) {
    if (ticket === state.detections) fail(error);
  }
  if (ticket !== state.detections) return;
  $("#status").textContent = answer
    ? `${answer.width}x${answer.height}${answer.oriented ? " (turned as its EXIF orientation says)" : ""}, ${Math.round(answer.timings.total_ms)} ms, vocabulary version ${answer.vocabulary_version}`
    : "";
  state.answer = answer;
  groupPairs();
  draw();
  list();
}

// One colour per human-object pair: triplets of a pair share its boxes.
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
  "#f032e6", "#9a6324", "#469990", "#800000", "#808000", "#000075"];

function groupPairs() {
  const byBoxes = new Map();
  const threshold = Number($("#threshold").value);
  for (const t of state.answer ? state.answer.triplets : []) {
    if (t.score < threshold) continue;
    const key = JSON.stringify([t.human.box, t.object.box]);
    if (!byBoxes.has(key)) {
      byBoxes.set(key, { human: t.human.box, object: t.object.box, triplets: [] });
    }
    byBoxes.get(key).triplets.push(t);
  }
  state.pairs = [...byBoxes.values()].map((pair, i) => ({ ...pair, colour: COLOURS[i % COLOURS.length] }));
  state.active = null;
  $("#canvas").dataset.pairs = String(state.pairs.length);
}

function draw() {
  const canvas = $("#canvas");
  const bitmap = state.bitmap;
  if (!bitmap) return;
  // Fit a 900x640 box, small images enlarged so boxes and labels stay readable.
  const scale = Math.min(900 / bitmap.width, 640 / bitmap.height);
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const g = canvas.getContext("2d");
  g.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  // Boxes are in the pixels of the image the server used (its size is in the answer).
  const boxScale = canvas.width / ((state.answer && state.answer.width) || bitmap.width);
  const font = Math.max(13, Math.round(canvas.width / 55));
  g.font = `${font}px system-ui, sans-serif`;
  g.textBaseline = "top";
  const placed = [];
  state.pairs.forEach((pair, i) => {
    const dim = state.active !== null && state.active !== i;
    g.globalAlpha = dim ? 0.25 : 1;
    g.strokeStyle = pair.colour;
    g.lineWidth = state.active === i ? 4 : 2;
    for (const box of [pair.human, pair.object]) {
      const [x1, y1, x2, y2] = box.map((v) => v * boxScale);
      g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
    // The label goes at the object box's top left, moved down until it covers no other.
    const best = pair.triplets[0];
    const text = `${best.verb} ${best.object.label} ${best.score.toFixed(2)}`;
    const w = g.measureText(text).width + 8;
    const h = font + 6;
    let x = Math.min(Math.max(0, pair.object[0] * boxScale), canvas.width - w);
    let y = Math.max(0, pair.object[1] * boxScale - h);
    while (placed.some((r) => x < r.x + r.w && r.x < x + w && y < r.y + r.h && r.y < y + h)) {
      y += h;
    }
    placed.push({ x, y, w, h });
    g.fillStyle = pair.colour;
    g.fillRect(x, y, w, h);
    g.fillStyle = "#fff";
    g.fillText(text, x + 4, y + 3);
  });
  g.globalAlpha = 1;
}

function source(row) {
  if (!row) return "";
  return row.kind === "examples" ? `examples (${row.examples})` : row.kind;
}

function list() {
  const ol = $("#triplets");
  ol.replaceChildren();
  state.pairs.forEach((pair, i) => {
    for (const t of pair.triplets) {
      const li = document.createElement("li");
      li.dataset.pair = String(i);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = pair.colour;
      const what = document.createElement("span");
      what.textContent = `${t.verb} ${t.object.label}`;
      const why = document.createElement("span");
      why.className = "why";
      if (t.explanation) {
        const e = t.explanation;
        why.textContent = `verb row: ${source(e.verb_row)}, interaction row: ${source(e.interaction_row)}`;
        li.title = `interaction ${e.interaction_score.toFixed(3)} (text ${e.text_logit.toFixed(2)} + verb ${e.verb_logit.toFixed(2)})`
          + (e.tfe_score === undefined ? "" : ` + TFE ${e.tfe_score.toFixed(3)}`)
          + ` + object ${e.object_score.toFixed(3)}`;
      }
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = t.score.toFixed(3);
      const teach = document.createElement("button");
      teach.type = "button";
      teach.textContent = "teach";
      teach.title = "use this pair as an example of a verb";
      teach.addEventListener("click", () => openTeach(pair, t));
      li.append(swatch, what, why, score, teach);
      li.addEventListener("mouseenter", () => highlight(i));
      li.addEventListener("mouseleave", () => highlight(null));
      ol.append(li);
    }
  });
  if (state.answer && state.pairs.length === 0) {
    const li = document.createElement("li");
    li.textContent = "no interactions above the minimum score";
    ol.append(li);
  }
}

function highlight(i) {
  if (state.active === i) return;
  state.active = i;
  for (const li of document.querySelectorAll("#triplets li")) {
    li.classList.toggle("active", i !== null && li.dataset.pair === String(i));
  }
  draw();
}

// Hovering a box on the canvas highlights its pair (the smallest box under the pointer).
function pairAt(event) {
  const canvas = $("#canvas");
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  const used = state.answer || state.bitmap;
  const x = (event.offsetX * scale) / (canvas.width / used.width);
  const y = (event.offsetY * scale) / (canvas.height / used.height);
  let best = null;
  let bestArea = Infinity;
  state.pairs.forEach((pair, i) => {
    for (const [x1, y1, x2, y2] of [pair.human, pair.object]) {
      const area = (x2 - x1) * (y2 - y1);
      if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < bestArea) {
        best = i;
        bestArea = area;
      }
    }
  });
  return best;
}

async function useFile(file) {
  if (!file) return;
  state.file = file;
  try {
    state.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    state.bitmap = null;
  }
  await detect();
}

// --- vocabulary ------------------------------------------------------------------

const COLUMNS = {
  verbs: [["name", (e) => e.name], ["-ing", (e) => e.ing], ["row", (e) => e.row_source]],
  objects: [["name", (e) => e.name], ["prompt", (e) => e.prompt], ["row", (e) => e.row_source]],
  interactions: [["verb", (e) => e.verb], ["object", (e) => e.object || "–"], ["pack", (e) => e.pack], ["row", (e) => e.row_source]],
};

async function loadEntries() {
  try {
    state.entries = await api(`/${state.tab}`);
  } catch (error) {
    state.entries = [];
    fail(error);
  }
  if (state.tab === "verbs") fillVerbNames(state.entries);
  showEntries();
}

function fillVerbNames(verbs) {
  const names = $("#verb-names");
  names.replaceChildren(...verbs.map((v) => Object.assign(document.createElement("option"), { value: v.name })));
}

function showEntries() {
  const columns = COLUMNS[state.tab];
  const head = document.createElement("tr");
  for (const [title] of columns) head.append(Object.assign(document.createElement("th"), { textContent: title }));
  $("#entries thead").replaceChildren(head);
  const needle = $("#search").value.trim().toLowerCase();
  const rows = state.entries
    .filter((e) => !needle || JSON.stringify(e).toLowerCase().includes(needle))
    .slice(0, 500)
    .map((e) => {
      const tr = document.createElement("tr");
      for (const [title, value] of columns) {
        const td = document.createElement("td");
        const v = value(e);
        if (title === "row") {
          td.append(Object.assign(document.createElement("span"), {
            className: `source ${v ? v.kind : ""}`,
            textContent: source(v) || "–",
          }));
        } else {
          td.textContent = v;
        }
        tr.append(td);
      }
      return tr;
    });
  $("#entries tbody").replaceChildren(...rows);
}

async function addVerb(event) {
  event.preventDefault();
  const form = event.target;
  const body = {
    name: form.name.value.trim(),
    ing: form.ing.value.trim(),
    objects: form.objects.value.split(",").map((o) => o.trim()).filter(Boolean),
  };
  try {
    const created = await api("/verbs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    say(`"${created.verb.name}" added with ${created.interactions.length} interaction(s).`);
    form.reset();
    await loadPacks();
    await loadEntries();
    await detect();
  } catch (error) {
    fail(error);
  }
}

function openTeach(pair, triplet) {
  state.teaching = { pair, triplet };
  $("#teach-pair").textContent = `a person and the ${triplet.object.label}`;
  $("#teach-verb").value = "";
  $("#teach").returnValue = "";
  api("/verbs").then(fillVerbNames).catch(fail);
  $("#teach").showModal();
}

async function teach() {
  const { pair, triplet } = state.teaching;
  const name = $("#teach-verb").value.trim();
  try {
    const verbs = await api("/verbs");
    const verb = verbs.find((v) => v.name === name);
    if (!verb) throw new Error(`no verb "${name}": add it first`);
    // Detected boxes may reach past the frame; examples must lie inside the image.
    const { width, height } = state.answer;
    const inside = ([x1, y1, x2, y2]) => [
      Math.max(0, x1), Math.max(0, y1), Math.min(width, x2), Math.min(height, y2),
    ];
    const example = {
      image: await base64(state.file),
      human_box: inside(pair.human),
      object_box: inside(pair.object),
      object: triplet.object.label,
    };
    const taught = await api(`/verbs/${verb.id}/examples`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ examples: [example] }),
    });
    say(`"${verb.name}" now learns from ${source(taught.verb.row_source)}.`);
    await loadEntries();
    await detect();
  } catch (error) {
    fail(error);
  }
}

// --- wiring ----------------------------------------------------------------------

function wire() {
  $("#key").value = state.key;
  $("#key").addEventListener("change", (e) => {
    state.key = e.target.value;
    localStorage.setItem("hoiclip-api-key", state.key);
    loadEntries();
  });
  $("#file").addEventListener("change", (e) => useFile(e.target.files[0]));
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    useFile(e.dataTransfer.files[0]);
  });
  $("#pack").addEventListener("change", detect);
  $("#tfe").addEventListener("change", detect);
  $("#threshold").addEventListener("input", (e) => {
    $("#threshold-value").textContent = Number(e.target.value).toFixed(2);
    groupPairs();
    draw();
    list();
  });
  const canvas = $("#canvas");
  canvas.addEventListener("mousemove", (e) => state.bitmap && highlight(pairAt(e)));
  canvas.addEventListener("mouseleave", () => highlight(null));
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b === button));
      state.tab = button.dataset.tab;
      loadEntries();
    });
  }
  $("#search").addEventListener("input", showEntries);
  $("#add-verb").addEventListener("submit", addVerb);
  $("#teach").addEventListener("close", () => {
    if ($("#teach").returnValue === "teach") teach();
  });
}

wire();
loadInfo().catch(fail);
loadEntries();
