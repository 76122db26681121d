// The live page: one WebSocket; each frame message holds a JPEG and the record of that same
// frame, drawn together in one task (never a mask over another frame).
import { drawBoxes, drawMasks } from "./overlay.js";

const MAX_TIMELINE = 300;
const TRAIL_POINTS = 64;
const state = { cameras: [], classes: [], tiles: new Map(), trails: new Map(), large: null, socket: null };
// Read by the tests and by anyone curious: what was drawn, and what was dropped.
window.segpost = { drawn: 0, dropped: 0, mismatched: 0, events: 0, paintMs: [] };

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
    el("canvas", { className: "masks" }), el("canvas", { className: "boxes" })]);
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

function b64bytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// Draw `message` (frame + record) into `stack` and stamp both indices on `holder`.
function paint(stack, holder, bitmap, message, trails) {
  const started = performance.now();
  const [frame, masks, boxes] = stack.querySelectorAll("canvas");
  for (const c of [frame, masks, boxes]) { c.width = message.width; c.height = message.height; }
  frame.getContext("2d").drawImage(bitmap, 0, 0, message.width, message.height);
  const record = message.record;
  if (record.frame_index === message.frame_index) {
    drawMasks(masks, record, state.classes);
    drawBoxes(boxes, record, state.classes, trails);
  } else {
    window.segpost.mismatched++;   // the server broke its promise: show the frame bare
  }
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
    const bitmap = await createImageBitmap(new Blob([b64bytes(message.jpeg)], { type: "image/jpeg" }));
    if (state.large && String(state.large.id) === key) {
      const large = $("large"), stack = $("large-stack");   // as large as the window allows, aspect kept
      const width = Math.min(large.clientWidth - 16, (large.clientHeight - 60) * message.width / message.height);
      stack.style.width = `${Math.max(100, Math.floor(width))}px`;
      paint(stack, large, bitmap, message, trails);
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

function openLarge(camera) {
  state.large = camera;
  $("large-title").textContent = `camera ${camera.id}  ${camera.source}`;
  $("large").hidden = false;
  watch([camera.id]);
}

function closeLarge() {
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
      document.body.dataset.ready = "1";
      if (state.large) watch([state.large.id]);
    } else if (message.type === "frame") {
      onFrame(message);
    } else if (message.type === "event") {
      addEvent(message.event, true);
    } else if (message.type === "health") {
      showHealth(message.health);
    }
  };
}

$("filter-camera").addEventListener("change", () => [...$("timeline").children].forEach(filterRow));
$("filter-class").addEventListener("change", () => [...$("timeline").children].forEach(filterRow));
$("large-close").addEventListener("click", closeLarge);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.large) closeLarge(); });
connect();
