// Drawing one frame's record over that frame: COCO RLE masks, boxes, labels, track trails.
// A mask is decoded at the frame's own size and sampled at the canvas's size by the pixel
// centre rule: canvas pixel (x, y) shows source pixel (floor((x + .5) * W / w), floor((y + .5) * H / h)).

const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]];
export const MASK_ALPHA = 110;

// pycocotools' compressed counts string (rleFrString) -> run lengths, first run = background.
export function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// A mask {size: [H, W], counts} -> Uint8Array of H*W in column-major order (COCO's), 1 = set.
export function decodeRle(mask) {
  const [h, w] = mask.size;
  const out = new Uint8Array(h * w);
  const counts = typeof mask.counts === "string" ? rleCounts(mask.counts) : mask.counts;
  let at = 0;
  for (let i = 0; i < counts.length; i++) {
    const end = Math.min(at + counts[i], out.length);
    if (i % 2 === 1) out.fill(1, at, end);
    at = end;
  }
  return out;
}

// A frame message's JPEG (base64) as an ImageBitmap.
export function decodeJpeg(base64) {
  const raw = atob(base64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
}

export function colour(detection, classes) {
  const id = detection.track_id !== undefined && detection.track_id >= 0
    ? detection.track_id : classes.indexOf(detection.class);
  return PALETTE[((id % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// The masks of `record`, on `canvas` (already sized): one ImageData, the last mask wins.
export function drawMasks(canvas, record, classes) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const image = ctx.createImageData(w, h);
  const px = image.data;
  const [H, W] = record.frame_size;
  const sx = new Int32Array(w), sy = new Int32Array(h);
  for (let x = 0; x < w; x++) sx[x] = Math.min(W - 1, Math.floor((x + 0.5) * W / w));
  for (let y = 0; y < h; y++) sy[y] = Math.min(H - 1, Math.floor((y + 0.5) * H / h));
  for (const d of record.detections) {
    if (!d.mask || typeof d.mask !== "object") continue;
    const [mh, mw] = d.mask.size;
    if (mh !== H || mw !== W) continue;
    const bits = decodeRle(d.mask);
    const [r, g, b] = colour(d, classes);
    for (let x = 0; x < w; x++) {
      const column = sx[x] * H;
      for (let y = 0; y < h; y++) {
        if (bits[column + sy[y]]) {
          const o = (y * w + x) * 4;
          px[o] = r; px[o + 1] = g; px[o + 2] = b; px[o + 3] = MASK_ALPHA;
        }
      }
    }
  }
  ctx.putImageData(image, 0, 0);
}

// Boxes and "class score #track" labels; `trails` (optional): track id -> [[x, y], ...] in frame pixels.
export function drawBoxes(canvas, record, classes, trails) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const [H, W] = record.frame_size;
  const fx = canvas.width / W, fy = canvas.height / H;
  const font = Math.max(10, Math.round(canvas.height / 24));
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(1, canvas.width / 400);
  if (trails) {
    for (const [track, points] of trails) {
      if (points.length < 2) continue;
      const [r, g, b] = colour({ track_id: track }, classes);
      ctx.strokeStyle = `rgb(${r},${g},${b})`;
      ctx.beginPath();
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x * fx, y * fy) : ctx.moveTo(x * fx, y * fy)));
      ctx.stroke();
    }
  }
  for (const d of record.detections) {
    const [x0, y0, x1, y1] = d.box;
    const [r, g, b] = colour(d, classes);
    ctx.strokeStyle = `rgb(${r},${g},${b})`;
    ctx.strokeRect(x0 * fx, y0 * fy, (x1 - x0) * fx, (y1 - y0) * fy);
    const label = `${d.class} ${d.score.toFixed(2)}` + (d.track_id >= 0 ? ` #${d.track_id}` : "");
    const tw = ctx.measureText(label).width + 4;
    const ty = Math.max(0, y0 * fy - font - 2);
    ctx.fillStyle = `rgba(${r},${g},${b},0.8)`;
    ctx.fillRect(x0 * fx, ty, tw, font + 2);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x0 * fx + 2, ty + font - 1);
  }
}
