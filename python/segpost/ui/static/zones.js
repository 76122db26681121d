// Zones and lines over a camera's frame (fractions of the frame, y down), lit while the records
// say they are occupied (zone_count > 0) or just crossed (line_crossed, for a second), and the
// editor of the large view: draw a polygon or a line, drag a vertex or a whole zone, save.

const IDLE = "rgba(255,255,255,0.9)", LIT = "rgba(255,200,0,1)", EDIT = "rgba(80,200,255,1)";
const GRAB_PX = 10;           // a vertex is grabbed within this many canvas pixels
export const FLASH_MS = 1000; // a crossed line stays lit this long

export function occupied(occupancy, name) {
  const classes = (occupancy || {})[name];
  return !!classes && Object.values(classes).some((n) => n > 0);
}

function points(entry) { return entry.polygon || entry.line || []; }

// `entries`: the camera's zones and lines; `occupancy`: zone -> class -> count;
// `crossed`: line -> when it was last crossed (ms); `edit`: {selected, draft} or null.
export function drawZones(canvas, entries, occupancy, crossed, edit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const font = Math.max(10, Math.round(h / 26));
  ctx.font = `${font}px system-ui, sans-serif`;
  const now = performance.now();
  const shapes = (entries || []).map((e, i) => [e, i]);
  if (edit && edit.draft) shapes.push([edit.draft, -1]);
  for (const [entry, i] of shapes) {
    const pts = points(entry);
    if (!pts.length) continue;
    const lit = entry.polygon ? occupied(occupancy, entry.name)
      : now - ((crossed || {})[entry.name] || -1e9) < FLASH_MS;
    const selected = edit && (edit.selected === i || i === -1);
    const colour = selected ? EDIT : lit ? LIT : IDLE;
    ctx.strokeStyle = colour;
    ctx.lineWidth = Math.max(1.5, w / (lit ? 200 : 350));
    ctx.setLineDash(entry.line ? [8, 5] : []);
    ctx.beginPath();
    pts.forEach(([x, y], k) => (k ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
    if (entry.polygon && i !== -1) ctx.closePath();
    if (entry.polygon && lit) { ctx.fillStyle = "rgba(255,200,0,0.22)"; ctx.fill(); }
    ctx.stroke();
    ctx.setLineDash([]);
    if (selected) {
      ctx.fillStyle = EDIT;
      for (const [x, y] of pts) ctx.fillRect(x * w - 4, y * h - 4, 8, 8);
    }
    if (entry.name) {
      ctx.fillStyle = colour;
      ctx.fillText(entry.name, pts[0][0] * w + 4, Math.max(font, pts[0][1] * h - 4));
    }
  }
}

// The editor of one camera's zones on the large view's top canvas. `onChange()` redraws.
export class ZoneEditor {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.onChange = onChange;
    this.entries = null;       // the camera's zones being edited (a copy), or null when not editing
    this.selected = -1;
    this.draft = null;         // a shape being drawn: {polygon: [...]} or {line: [...]}
    this.drag = null;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", () => { this.drag = null; });
  }

  get editing() { return this.entries !== null; }

  start(entries) {
    this.entries = JSON.parse(JSON.stringify(entries || []));
    this.selected = this.entries.length ? 0 : -1;
    this.draft = null;
    this.onChange();
  }

  stop() { this.entries = null; this.draft = null; this.selected = -1; this.onChange(); }

  at(e) {   // the pointer in fractions of the frame, kept inside it
    const r = this.canvas.getBoundingClientRect();
    const clamp = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  }

  newShape(kind) { this.draft = kind === "line" ? { line: [] } : { polygon: [] }; this.onChange(); }

  // Ends the shape being drawn: it joins the zones under `name` (false if it is not finished).
  finish(name) {
    const d = this.draft;
    if (!d) return false;
    const pts = points(d);
    if ((d.line && pts.length !== 2) || (d.polygon && pts.length < 3)) return false;
    const entry = d.line ? { name, line: pts, inward: "right" } : { name, polygon: pts };
    this.entries.push(entry);
    this.selected = this.entries.length - 1;
    this.draft = null;
    this.onChange();
    return true;
  }

  remove() {
    if (this.selected < 0) return;
    this.entries.splice(this.selected, 1);
    this.selected = Math.min(this.selected, this.entries.length - 1);
    this.onChange();
  }

  down(e) {
    if (!this.editing) return;
    const p = this.at(e);
    if (this.draft) {
      points(this.draft).push(p);
      if (this.draft.line && this.draft.line.length === 2) this.onChange("line-drawn");
      this.onChange();
      return;
    }
    const r = this.canvas.getBoundingClientRect();
    // A vertex of any zone (the selected one first), else the inside of a polygon: moved whole.
    const order = [this.selected, ...this.entries.keys()].filter((i) => i >= 0);
    for (const i of order) {
      const pts = points(this.entries[i]);
      for (let k = 0; k < pts.length; k++) {
        if (Math.hypot((pts[k][0] - p[0]) * r.width, (pts[k][1] - p[1]) * r.height) <= GRAB_PX) {
          this.selected = i;
          this.drag = { vertex: k, last: p };
          this.canvas.setPointerCapture(e.pointerId);
          this.onChange();
          return;
        }
      }
    }
    for (const i of order) {
      const entry = this.entries[i];
      if (entry.polygon && inside(entry.polygon, p)) {
        this.selected = i;
        this.drag = { vertex: -1, last: p };
        this.canvas.setPointerCapture(e.pointerId);
        this.onChange();
        return;
      }
    }
  }

  move(e) {
    if (!this.drag || !this.editing) return;
    const p = this.at(e);
    const pts = points(this.entries[this.selected]);
    if (this.drag.vertex >= 0) {
      pts[this.drag.vertex] = p;
    } else {   // the whole zone, kept inside the frame
      let dx = p[0] - this.drag.last[0], dy = p[1] - this.drag.last[1];
      for (const [x, y] of pts) {
        dx = Math.min(Math.max(dx, -x), 1 - x);
        dy = Math.min(Math.max(dy, -y), 1 - y);
      }
      for (const q of pts) { q[0] = Math.round((q[0] + dx) * 10000) / 10000; q[1] = Math.round((q[1] + dy) * 10000) / 10000; }
    }
    this.drag.last = p;
    this.onChange();
  }
}

export function inside(polygon, [x, y]) {
  let hit = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i], [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}
