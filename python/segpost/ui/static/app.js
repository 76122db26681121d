// The live page: one WebSocket; each frame message holds a JPEG and the record of that same
// frame, drawn together in one task (never a mask over another frame).
import { decodeJpeg, drawBoxes, drawMasks } from "./overlay.js";
import { drawZones, FLASH_MS, ZoneEditor } from "./zones.js";

const MAX_TIMELINE = 300;
const TRAIL_POINTS = 64;
const state = { cameras: [], classes: [], tiles: new Map(), trails: new Map(), large: null, socket: null,
  zones: {}, editable: false, occupancy: {}, crossed: {} };
// Read by the tests and by anyone curious: what was drawn, and what was dropped.
window.segpost = { drawn: 0, dropped: 0, mismatched: 0, events: 0, paintMs: [] };

// Frame/overlay sync as the page shows it: after every change of a frame canvas or its overlay,
// and at every animation frame, the frame index of the pixels shown minus the frame index of the
// overlay shown over them (an overlay not drawn counts as out of sync). bench/ui_cost.py and
// tests/test_ui.py read summary().
const SYNC_KEEP = 5000;
const OUT_OF_SYNC = 1e6;
window.__segpostSync = {
  diffs: [], samples: 0, nonzero: 0, max: 0,
  add(diff) {
    this.samples++;
    if (diff !== 0) this.nonzero++;
    this.max = Math.max(this.max, diff);
    this.diffs.push(diff);
    if (this.diffs.length > SYNC_KEEP) this.diffs.shift();
  },
  summary() {
    const sorted = [...this.diffs].sort((a, b) => a - b);
    const at = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
    return { samples: this.samples, kept: sorted.length, nonzero: this.nonzero, max: this.max,
      p50: at(0.5), p95: at(0.95), p99: at(0.99) };
  },
};

function syncSample(stack) {
  const [frame, masks] = stack.querySelectorAll("canvas");
  if (frame.dataset.index === undefined) return;
  const overlay = masks.dataset.index;
  window.__segpostSync.add(overlay === undefined || overlay === ""
    ? OUT_OF_SYNC : Math.abs(Number(frame.dataset.index) - Number(overlay)));
}

function sampleShown() {   // what is on screen at this animation frame
  if (!document.hidden) {
    if (state.large && !$("large").hidden) syncSample($("large-stack"));
    else for (const entry of state.tiles.values()) syncSample(entry.stack);
  }
  requestAnimationFrame(sampleShown);
}

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v); else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

function makeStack() {
  return el("div", { className: "stack" }, [el("canvas", { className: "frame" }),
    el("canvas", { className: "masks" }), el("canvas", { className: "boxes" }), el("canvas", { className: "zones" })]);
}

function addTile(camera) {
  const stack = makeStack();
  const caption = el("figcaption", { textContent: `camera ${camera.id}  ${camera.source}` });
  const tile = el("figure", { className: "tile", dataset: { camera: String(camera.id) } }, [stack, caption]);
  tile.addEventListener("click", () => openLarge(camera));
  $("grid").append(tile);
  state.tiles.set(String(camera.id), { tile, stack, busy: false, pending: null, caption, camera });
  $("filter-camera").append(el("option", { value: String(camera.id), textContent: String(camera.id) }));
}

// Draw `message` (frame + record) into `stack` and stamp both indices on `holder`: in one task,
// so no screen ever shows one frame's pixels under another frame's overlay.
function paint(stack, holder, bitmap, message, trails) {
  const started = performance.now();
  const [frame, masks, boxes, zones] = stack.querySelectorAll("canvas");
  for (const c of [frame, masks, boxes, zones]) { c.width = message.width; c.height = message.height; }
  frame.getContext("2d").drawImage(bitmap, 0, 0, message.width, message.height);
  frame.dataset.index = String(message.frame_index);
  const record = message.record;
  if (record.frame_index === message.frame_index) {
    drawMasks(masks, record, state.classes);
    drawBoxes(boxes, record, state.classes, trails);
    masks.dataset.index = String(record.frame_index);
  } else {
    window.segpost.mismatched++;   // the server broke its promise: show the frame bare
    masks.dataset.index = "";
  }
  drawCameraZones(String(message.camera), zones, holder === $("large"));
  syncSample(stack);
  holder.dataset.frameIndex = String(message.frame_index);
  holder.dataset.overlayIndex = String(record.frame_index);
  window.segpost.drawn++;
  const times = window.segpost.paintMs;   // the last 500 paints' times (bench/ui_cost.py reads them)
  times.push(performance.now() - started);
  if (times.length > 500) times.shift();
}

function learnClasses(record) {
  for (const d of record.detections) {
    if (!state.classes.includes(d.class)) {
      state.classes.push(d.class);
      $("filter-class").append(el("option", { value: d.class, textContent: d.class }));
    }
  }
}

function updateTrails(camera, record) {
  if (!state.trails.has(camera)) state.trails.set(camera, new Map());
  const trails = state.trails.get(camera);
  const seen = new Set();
  for (const d of record.detections) {
    if (!(d.track_id >= 0)) continue;
    seen.add(d.track_id);
    const points = trails.get(d.track_id) || [];
    points.push([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2]);
    if (points.length > TRAIL_POINTS) points.shift();
    trails.set(d.track_id, points);
  }
  for (const track of [...trails.keys()]) if (!seen.has(track) && trails.size > 64) trails.delete(track);
  return trails;
}

async function onFrame(message) {
  const key = String(message.camera);
  const entry = state.tiles.get(key);
  if (!entry) return;
  if (entry.busy) {                 // still decoding the previous JPEG: keep only the newest
    if (entry.pending) window.segpost.dropped++;
    entry.pending = message;
    return;
  }
  entry.busy = true;
  try {
    learnClasses(message.record);
    const trails = updateTrails(key, message.record);
    const bitmap = await decodeJpeg(message.jpeg);
    if (state.large && String(state.large.id) === key) {
      state.largeAspect = message.width / message.height;
      fitLarge();
      paint($("large-stack"), $("large"), bitmap, message, trails);
    } else {
      paint(entry.stack, entry.tile, bitmap, message, null);
    }
    bitmap.close();
  } finally {
    entry.busy = false;
    const next = entry.pending;
    entry.pending = null;
    if (next) onFrame(next);
  }
}

function drawCameraZones(key, canvas, large) {
  const editing = large && editor.editing;
  drawZones(canvas, editing ? editor.entries : state.zones[key], state.occupancy[key], state.crossed[key],
    editing ? { selected: editor.selected, draft: editor.draft } : null);
}

function redrawZones(key) {
  const entry = state.tiles.get(key);
  if (entry) drawCameraZones(key, entry.stack.querySelector("canvas.zones"), false);
  if (state.large && String(state.large.id) === key) drawCameraZones(key, $("large-stack").querySelector("canvas.zones"), true);
}

const editor = new ZoneEditor($("large-stack").querySelector("canvas.zones"), (what) => {
  if (what === "line-drawn") $("zone-finish").click();
  if (state.large) redrawZones(String(state.large.id));
  showZoneList();
});

function showZoneList() {
  const list = $("zone-list");
  list.replaceChildren();
  if (!editor.editing) return;
  editor.entries.forEach((entry, i) => {
    const item = el("li", { textContent: `${entry.polygon ? "zone" : "line"} ${entry.name}`,
      className: i === editor.selected ? "selected" : "", dataset: { index: String(i), name: entry.name } });
    item.addEventListener("click", () => { editor.selected = i; editor.onChange(); });
    list.append(item);
  });
}

function zoneTools(editing) {
  $("zone-tools").hidden = !editing;
  $("zone-edit").hidden = editing || !state.editable;
  $("large").dataset.editing = editing ? "1" : "0";
  fitLarge();
}

function startEditing() {
  if (!state.large) return;
  $("zone-error").textContent = "";
  $("zone-saved").textContent = "";
  editor.start(state.zones[String(state.large.id)]);
  zoneTools(true);
}

function stopEditing() {
  editor.stop();
  zoneTools(false);
}

function newShape(kind) {
  $("zone-error").textContent = "";
  editor.newShape(kind);
}

function finishShape() {
  const name = $("zone-name").value.trim() || `zone${editor.entries.length + 1}`;
  if (!editor.finish(name)) $("zone-error").textContent = "a polygon needs 3 points or more, a line 2";
}

async function saveZones() {
  const camera = String(state.large.id);
  $("zone-error").textContent = "";
  $("zone-saved").textContent = "saving...";
  let answer, body;
  try {
    answer = await fetch("/api/zones", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ camera, zones: editor.entries }) });
    body = await answer.json();
  } catch (error) {
    body = { error: String(error) };
  }
  $("zone-saved").textContent = "";
  if (!answer || !answer.ok) {   // the run's own one-line error, e.g. a self-intersecting polygon
    $("zone-error").textContent = body.error || `the save failed (HTTP ${answer && answer.status})`;
    return;
  }
  state.zones = body.zones;
  stopEditing();
  $("zone-saved").textContent = "saved: the next rounds use these zones";
  for (const key of state.tiles.keys()) redrawZones(key);
}

function fitLarge() {   // the large frame as large as the window allows below the tools, aspect kept
  const large = $("large"), stack = $("large-stack");
  if (!state.largeAspect || large.hidden) return;
  const top = stack.getBoundingClientRect().top - large.getBoundingClientRect().top + large.scrollTop;
  const width = Math.min(large.clientWidth - 16, (large.clientHeight - top - 12) * state.largeAspect);
  stack.style.width = `${Math.max(100, Math.floor(width))}px`;
}

function openLarge(camera) {
  state.large = camera;
  stopEditing();
  $("large-title").textContent = `camera ${camera.id}  ${camera.source}`;
  $("large").hidden = false;
  watch([camera.id]);
}

function closeLarge() {
  stopEditing();
  state.large = null;
  $("large").hidden = true;
  watch(state.cameras.map((c) => c.id));
}

function watch(ids) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify({ watch: ids }));
}

function eventClass(event) { return event.class || ""; }

function filterRow(row) {
  const camera = $("filter-camera").value, klass = $("filter-class").value;
  row.hidden = (camera !== "" && row.dataset.camera !== camera) || (klass !== "" && row.dataset.class !== klass);
}

function zoneEvent(event) {
  const key = String(event.camera);
  if (event.event === "zone_count") {
    const zones = state.occupancy[key] || (state.occupancy[key] = {});
    (zones[event.zone] || (zones[event.zone] = {}))[event.class] = event.count;
  } else if (event.event === "line_crossed") {
    (state.crossed[key] || (state.crossed[key] = {}))[event.zone] = performance.now();
    setTimeout(() => redrawZones(key), FLASH_MS + 50);
  } else {
    return;
  }
  redrawZones(key);
}

function addEvent(event, live) {
  if (event.class && !state.classes.includes(event.class)) {
    state.classes.push(event.class);
    $("filter-class").append(el("option", { value: event.class, textContent: event.class }));
  }
  const when = event.time ? new Date(event.time * 1000).toLocaleTimeString() : "";
  const what = event.track_id !== undefined ? `${event.class} #${event.track_id}` : (event.message || "");
  const row = el("li", { dataset: { event: event.event, camera: String(event.camera), class: eventClass(event),
    time: String(event.time || ""), received: String(Date.now() / 1000), live: live ? "1" : "0",
    track: event.track_id === undefined ? "" : String(event.track_id) } },
  [el("span", { className: "kind", textContent: event.event }),
    el("span", { textContent: `${when}  camera ${event.camera}  ${what}` })]);
  filterRow(row);
  const list = $("timeline");
  list.prepend(row);
  while (list.children.length > MAX_TIMELINE) list.lastChild.remove();
  window.segpost.events++;
}

function fmt(value, digits, suffix = "") {
  return value === null || value === undefined ? "-" : `${Number(value).toFixed(digits)}${suffix}`;
}

function showHealth(health) {
  const body = $("health").querySelector("tbody");
  body.replaceChildren();
  for (const camera of state.cameras) {
    const h = health[String(camera.id)];
    if (!h) continue;
    const cells = [String(camera.id), fmt(h.fps, 1), fmt(h.skipped_share * 100, 1, "%"), fmt(h.stale_s, 1, " s"),
      String(h.reconnects), String(h.dropped)];
    const row = el("tr", { dataset: { camera: String(camera.id) } }, cells.map((t) => el("td", { textContent: t })));
    row.append(el("td", { className: "error", textContent: h.last_error || "", title: h.last_error || "" }));
    body.append(row);
  }
}

function onZones(message) {
  state.zones = message.zones || {};
  state.occupancy = message.occupancy || {};
  state.editable = !!message.editable;
  document.body.dataset.zonesEditable = state.editable ? "1" : "0";
  if (!editor.editing) zoneTools(false);
  for (const key of state.tiles.keys()) redrawZones(key);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  socket.onopen = () => { $("status").textContent = "live"; };
  socket.onclose = () => {
    $("status").textContent = "disconnected; retrying...";
    setTimeout(connect, 2000);
  };
  socket.onmessage = (msg) => {
    const message = JSON.parse(msg.data);
    if (message.type === "hello") {
      if (!state.cameras.length) {
        state.cameras = message.cameras;
        message.cameras.forEach(addTile);
        message.events.forEach((e) => addEvent(e, false));
      }
      showHealth(message.health);
      onZones(message);
      document.body.dataset.ready = "1";
      if (state.large) watch([state.large.id]);
    } else if (message.type === "frame") {
      onFrame(message);
    } else if (message.type === "event") {
      addEvent(message.event, true);
      zoneEvent(message.event);
    } else if (message.type === "zones") {
      onZones(message);
    } else if (message.type === "health") {
      showHealth(message.health);
    }
  };
}

$("filter-camera").addEventListener("change", () => [...$("timeline").children].forEach(filterRow));
$("filter-class").addEventListener("change", () => [...$("timeline").children].forEach(filterRow));
$("large-close").addEventListener("click", closeLarge);
$("zone-edit").addEventListener("click", startEditing);
$("zone-cancel").addEventListener("click", stopEditing);
$("zone-new-polygon").addEventListener("click", () => newShape("polygon"));
$("zone-new-line").addEventListener("click", () => newShape("line"));
$("zone-finish").addEventListener("click", finishShape);
$("zone-delete").addEventListener("click", () => editor.remove());
$("zone-save").addEventListener("click", saveZones);
requestAnimationFrame(sampleShown);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.large) closeLarge(); });
connect();
