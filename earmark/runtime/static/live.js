"use strict";
// earmark listen --ui: draws what the daemon sends as server-sent events (hello, mel, scores, state, event, scene, status, end).
const $ = (id) => document.getElementById(id);
const canvas = $("spectrogram");
const ctx = canvas.getContext("2d");
const RANGE = 9; // log-mel units shown below the loudest recent frame (natural log of power: about 40 dB)
let labels = [];
let rows = [];
let sceneRows = [];
let loudest = null;

// a viridis-like ramp: dark blue (quiet) to yellow (loud)
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const LUT = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * (STOPS.length - 1), k = Math.min(Math.floor(x), STOPS.length - 2), f = x - k;
  return STOPS[k].map((c, j) => Math.round(c + f * (STOPS[k + 1][j] - c)));
});

function scoreRows(box, names) {
  box.replaceChildren();
  return names.map((label) => {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.label = label;
    row.innerHTML = '<span class="name"></span><div class="bar"><div class="fill"></div><div class="threshold"></div></div><span class="value">–</span>';
    row.querySelector(".name").textContent = label;
    box.appendChild(row);
    return row;
  });
}

function hello(h) {
  labels = h.labels;
  $("model").textContent = h.model ? `model ${h.model}` : "";
  $("source").textContent = `source ${h.source}`;
  $("span").textContent = `(${(canvas.width * h.frame_seconds).toFixed(0)} s, newest on the right)`;
  $("scores-title").textContent = h.mode === "scenes" ? "scene scores" : "scores against thresholds";
  const box = $("scores");
  box.className = h.mode;
  rows = scoreRows(box, labels);
  const scenes = h.scene_labels || []; // a scene head beside the events
  $("scene-section").hidden = scenes.length === 0;
  sceneRows = scoreRows($("scene-scores"), scenes);
  $("events").tBodies[0].replaceChildren(); // the backlog that follows replays the recent events
  showScores({ scores: labels.map(() => 0), thresholds: h.thresholds });
}

function drawMel(m) {
  const bytes = Uint8Array.from(atob(m.data), (c) => c.charCodeAt(0));
  const mels = bytes.length / m.frames, step = (m.hi - m.lo) / 255;
  loudest = loudest === null ? m.hi : Math.max(m.hi, loudest - 0.05);
  const w = canvas.width, h = canvas.height, shift = Math.min(m.frames, w);
  ctx.drawImage(canvas, -shift, 0); // scroll left by the new columns
  const img = ctx.createImageData(shift, h);
  for (let x = 0; x < shift; x++) {
    const frame = m.frames - shift + x;
    for (let y = 0; y < h; y++) {
      const mel = Math.floor(((h - 1 - y) * mels) / h); // low frequencies at the bottom
      const v = m.lo + bytes[frame * mels + mel] * step;
      const c = LUT[Math.max(0, Math.min(255, Math.round(((v - loudest + RANGE) / RANGE) * 255)))];
      const o = (y * shift + x) * 4;
      img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, w - shift, 0);
}

function showScores(s) {
  rows.forEach((row, i) => {
    const p = s.scores[i], t = s.thresholds[i];
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".threshold").style.left = `${(100 * t).toFixed(1)}%`;
    row.querySelector(".value").textContent = p.toFixed(2);
    row.classList.toggle("over", p >= t);
  });
  if (!s.scene) return;
  const top = s.scene.indexOf(Math.max(...s.scene));
  sceneRows.forEach((row, i) => {
    row.querySelector(".fill").style.width = `${(100 * s.scene[i]).toFixed(1)}%`;
    row.querySelector(".value").textContent = s.scene[i].toFixed(2);
    row.classList.toggle("top", i === top);
  });
}

// the row of a label's event still sounding (data-open "on"), or just ended and waiting for its record ("off")
const openRow = (label) => [...$("events").tBodies[0].rows].find((tr) => tr.dataset.label === label && tr.dataset.open);

function addRow(label, type, cells) {
  const tr = document.createElement("tr");
  tr.dataset.label = label;
  tr.dataset.type = type;
  for (const text of cells) tr.appendChild(document.createElement("td")).textContent = text;
  const body = $("events").tBodies[0];
  body.insertBefore(tr, body.firstChild);
  while (body.rows.length > 100) body.deleteRow(-1);
  return tr;
}

function showState(s) {
  const row = rows[labels.indexOf(s.label)];
  if (row) row.classList.toggle("on", s.on);
  const open = openRow(s.label);
  if (s.on) {
    if (open) open.remove(); // ended without an event record (shorter than --min-duration)
    addRow(s.label, "event", [s.since.slice(11, 19), s.label, "sounding", "–"]).dataset.open = "on";
  } else if (open) {
    open.dataset.open = "off";
  }
}

function logRecord(r) {
  const when = (r.onset_time || r.wall_time || "").slice(11, 19);
  const duration = r.type === "event" ? `${(r.offset - r.onset).toFixed(2)} s` : "scene";
  const cells = [when, r.label, duration, r.score.toFixed(2)];
  const open = r.type === "event" && openRow(r.label);
  if (!open) return addRow(r.label, r.type, cells);
  [...open.cells].forEach((td, i) => { td.textContent = cells[i]; });
  delete open.dataset.open;
}

function showStatus(s) {
  const items = [["audio", `${s.audio_seconds.toFixed(1)} s`], ["real-time factor", s.rtf.toFixed(4)],
    ["latency p50", s.latency_ms_p50 === null ? "–" : `${s.latency_ms_p50.toFixed(2)} ms`],
    ["overruns", s.overruns], ["reconnects", s.reconnects], ["non-finite samples", s.nonfinite_samples]];
  if (s.stateful) items.push(["state resets", s.state_resets]);
  for (const [name, d] of Object.entries(s.sinks || {})) {
    items.push([`sink ${name}`, `${d.sent} sent, ${d.retried} retried, ${d.dropped} dropped`]);
  }
  const dl = $("status");
  dl.replaceChildren();
  for (const [name, value] of items) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value;
    dd.dataset.name = name;
    dl.append(dt, dd);
  }
}

function connection(text, live) {
  const c = $("connection");
  c.textContent = text;
  c.className = live ? "live" : "down";
}

const source = new EventSource("/stream");
const on = (kind, show) => source.addEventListener(kind, (e) => show(JSON.parse(e.data)));
source.onopen = () => connection("live", true);
source.onerror = () => connection("reconnecting", false);
on("hello", hello);
on("mel", drawMel);
on("scores", showScores);
on("state", showState);
on("event", logRecord);
on("scene", logRecord);
on("status", showStatus);
on("end", () => { source.close(); connection("stream ended", false); });
