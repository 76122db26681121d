// The fleet's page: the coordinator's status (workers, their cameras and state) and each camera's
// latest record, asked once a second while the page is open.
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

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
