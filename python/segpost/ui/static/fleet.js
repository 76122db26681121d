// The fleet's page: the coordinator's status (workers, their cameras and state), each camera's
// latest record, and each camera's latest frame with that frame's masks and boxes drawn here,
// asked once a second while the page is open (frames only while it is shown: the workers encode
// nothing for a hidden or closed page).
import { decodeJpeg, drawBoxes, drawMasks } from "./overlay.js";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const classes = [];   // colour order: as the classes first appear
const tiles = new Map();
window.segpost = { framesDrawn: 0, mismatched: 0 };

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(cells, dataset, className = "") {
  const tr = document.createElement("tr");
  Object.assign(tr.dataset, dataset);
  if (className) tr.className = className;
  for (const c of cells) tr.append(c);
  return tr;
}

const ms = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(1));

function show(answer) {
  $("frames-note").textContent = answer.frames;
  const status = answer.status;
  const body = $("workers").querySelector("tbody");
  body.replaceChildren();
  if (!status) {
    $("status").textContent = "the fleet is starting (no status published yet)";
    return;
  }
  for (const w of status.workers || []) {
    body.append(row([cell(w.worker, "worker"), cell(w.state, `state-${w.state}`), cell(w.node || "-"),
      cell((w.gpus || []).join(",") || "-"), cell(Number(w.fps || 0).toFixed(1)),
      cell(`${ms(w.round_ms_p50)} / ${ms(w.round_ms_p95)}`), cell(String(w.restarts)), cell(""), cell(""),
      cell(w.last_error || "", "error")], { worker: w.worker, state: w.state }, "worker-row"));
    for (const name of w.cameras || []) {
      const latest = answer.cameras[name];
      const classes = latest ? Object.entries(latest.classes).map(([k, n]) => `${k} ${n}`).join(", ") : "";
      body.append(row([cell(`  ${name}`, "camera"), cell(""), cell(""), cell(""), cell(""), cell(""), cell(""),
        cell(latest ? String(latest.frame_index) : "-"),
        cell(latest ? `${latest.detections}${classes ? ` (${classes})` : ""}` : "-"),
        cell(latest ? `written ${latest.file_age_s} s ago` : "")],
      { camera: name, worker: w.worker, detections: latest ? String(latest.detections) : "",
        frameIndex: latest ? String(latest.frame_index) : "" }, "camera-row"));
    }
  }
  const standbys = $("standbys").querySelector("tbody");
  standbys.replaceChildren();
  for (const s of status.standbys || []) {
    standbys.append(row([cell(s.state), cell(s.node || "-"), cell((s.gpus || []).join(",") || "-"),
      cell(s.build_seconds === null || s.build_seconds === undefined ? "-" : `${s.build_seconds.toFixed(1)} s`)], {}));
  }
  $("status").textContent = `status of ${new Date(status.time * 1000).toLocaleTimeString()}`;
  document.body.dataset.ready = "1";
}

function tile(name) {
  if (!tiles.has(name)) {
    const figure = document.createElement("figure");
    figure.className = "tile frame-tile";
    figure.dataset.camera = name;
    const stack = document.createElement("div");
    stack.className = "stack";
    for (const kind of ["frame", "masks", "boxes"]) {
      const canvas = document.createElement("canvas");
      canvas.className = kind;
      stack.append(canvas);
    }
    const caption = document.createElement("figcaption");
    figure.append(stack, caption);
    const all = [...tiles.keys(), name].sort();
    const next = all[all.indexOf(name) + 1];
    $("frames").insertBefore(figure, next === undefined ? null : tiles.get(next));
    tiles.set(name, figure);
  }
  return tiles.get(name);
}

// One camera's frame and that frame's record, drawn in one task: never a record over another frame.
async function paint(name, message) {
  const figure = tile(name);
  if (figure.dataset.frameIndex === String(message.frame_index)) return;   // shown already
  const bitmap = await decodeJpeg(message.jpeg);
  const [frame, masks, boxes] = figure.querySelectorAll("canvas");
  for (const c of [frame, masks, boxes]) { c.width = message.width; c.height = message.height; }
  frame.getContext("2d").drawImage(bitmap, 0, 0, message.width, message.height);
  const record = message.record;
  for (const d of record.detections) if (!classes.includes(d.class)) classes.push(d.class);
  if (record.frame_index === message.frame_index) {
    drawMasks(masks, record, classes);
    drawBoxes(boxes, record, classes);
  } else {
    window.segpost.mismatched++;
  }
  figure.dataset.frameIndex = String(message.frame_index);
  figure.dataset.overlayIndex = String(record.frame_index);
  figure.dataset.detections = String(record.detections.length);
  figure.querySelector("figcaption").textContent =
    `${name}  frame ${message.frame_index}  ${record.detections.length} detections`;
  window.segpost.framesDrawn++;
}

async function pollFrames() {
  if (document.visibilityState === "visible") {
    try {
      const answer = await fetch("/api/frames", { credentials: "same-origin" });
      if (answer.status === 401) { location.href = "/login"; return; }
      const frames = await answer.json();
      for (const [name, message] of Object.entries(frames)) await paint(name, message);
    } catch (error) {
      $("status").textContent = `no frames (${error}); retrying...`;
    }
  }
  setTimeout(pollFrames, POLL_MS);
}

async function poll() {
  try {
    const answer = await fetch("/api/fleet", { credentials: "same-origin" });
    if (answer.status === 401) { location.href = "/login"; return; }
    show(await answer.json());
  } catch (error) {
    $("status").textContent = `no answer (${error}); retrying...`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
pollFrames();
