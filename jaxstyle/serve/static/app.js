// The page of `jaxstyle serve`: plain JavaScript, no framework, nothing from outside.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { photo: null, style: null, builtin: null, job: null, events: null, shown: null,
                previewBusy: false, previewAgain: false, live: null, losses: [] };
const counters = document.body.dataset;  // read by the browser tests
counters.progressImages = "0"; counters.liveFrames = "0"; counters.previews = "0";
let painter = null;  // the mask canvases (masks.js), made at start

// ------------------------------------------------------------------------------------ helpers

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  const type = response.headers.get("content-type") || "";
  return type.startsWith("application/json") ? response.json() : response.blob();
}

function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

function showError(error) {
  $("error-text").textContent = error.message || String(error);
  $("error").hidden = false;
}

function status(text) { $("status").textContent = text; }

function clock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function show(element) {
  for (const id of ["stage-hint", "compare", "picture", "camera"]) $(id).hidden = id !== element;
}

function setPicture(blobOrUrl) {
  const img = $("picture");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = typeof blobOrUrl === "string" ? blobOrUrl : URL.createObjectURL(blobOrUrl);
  show("picture");
}

// ------------------------------------------------------------------------------------ inputs

async function uploadFile(file, kind) {
  if (!file) return;
  try {
    status(`Reading ${file.name}…`);
    const upload = await api(`/api/images?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
    usePicked(kind, upload, URL.createObjectURL(file));
  } catch (error) { showError(error); status("Ready"); }
}

function usePicked(kind, upload, thumbnail) {
  if (kind === "photo") {
    state.photo = upload;
    $("photo-thumb").src = thumbnail; $("photo-thumb").hidden = false;
    $("photo-hint").firstChild.textContent = `${upload.name} (${upload.width}×${upload.height}). Drop another or `;
    if (masking()) startMasks();
  } else {
    state.style = upload; state.builtin = null;
    $("style-thumb").src = thumbnail; $("style-thumb").hidden = false;
    markChoice(null);
    chosen(`Style: ${upload.name}`);
  }
  status("Ready");
  settingsChanged();
}

function dropZone(zone, input, kind) {
  input.addEventListener("change", () => uploadFile(input.files[0], kind));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault(); zone.classList.remove("over");
    uploadFile(event.dataTransfer.files[0], kind);
  });
}

function markChoice(button) {
  for (const other of document.querySelectorAll(".choice")) other.setAttribute("aria-pressed", String(other === button));
}

async function bundled(name) {
  return api(`/api/bundled/${encodeURIComponent(name)}`, { method: "POST" });
}

function addPainting(upload, title) {
  const button = document.createElement("button");
  button.type = "button"; button.className = "choice"; button.title = title;
  const img = document.createElement("img");
  img.src = `/api/images/${upload.id}.jpg`; img.alt = title;
  button.append(img);
  button.addEventListener("click", () => {
    state.style = upload; state.builtin = null; markChoice(button);
    chosen(`Style: ${title}`);
    settingsChanged();
  });
  $("paintings").append(button);
}

// The 26 built-in styles (a thumbnail each), or with `jaxstyle serve --model` the model's, by name.
function addBuiltins(names) {
  const count = names ? names.length : 26;
  for (let i = 0; i < count; i++) {
    const name = names ? names[i] : `built-in style ${i}`;
    const button = document.createElement("button");
    button.type = "button"; button.className = "choice"; button.title = names ? `${i}: ${name}` : `Built-in style ${i}`;
    button.dataset.builtin = String(i);
    const tile = document.createElement("span");
    if (names) tile.textContent = `${i} ${name}`; else tile.style.backgroundPosition = `${-48 * i}px 0`;
    button.append(tile);
    button.addEventListener("click", () => {
      state.builtin = i; state.style = null; markChoice(button);
      chosen(`Style: ${name} (fast method)`);
      document.querySelector('input[name="method"][value="fast"]').checked = true;
      settingsChanged();
    });
    $("builtins").append(button);
  }
}

async function cameraStream() {
  return navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
}

function frameBlob(video, longSide, quality = 0.8) {
  const scale = Math.min(1, longSide / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale); canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
}

async function takePhoto() {
  try {
    const stream = await cameraStream();
    const video = $("camera"); video.srcObject = stream; show("camera");
    await video.play();
    await new Promise((resolve) => setTimeout(resolve, 400));  // let the exposure settle
    const blob = await frameBlob(video, 1280, 0.92);
    stream.getTracks().forEach((track) => track.stop());
    await uploadFile(new File([blob], "webcam.jpg", { type: "image/jpeg" }), "photo");
    show("stage-hint");
  } catch (error) { showError(error); }
}

// ------------------------------------------------------------------------------------ settings

const method = () => document.querySelector('input[name="method"]:checked').value;

function settings() {
  const body = {
    content: state.photo && state.photo.id, style: state.style && state.style.id, builtin: state.builtin,
    method: method(), max_size: Number($("size").value), preserve_color: $("color").value,
  };
  const masks = masking() ? painter.masks() : null;
  if (masks) {  // one style per painted region, in order, and its mask
    const choices = painter.regions.map((region) => region.choice);
    const styles = choices.filter((choice) => choice.style).map((choice) => choice.style.id);
    const builtins = choices.filter((choice) => choice.builtin !== null).map((choice) => choice.builtin);
    body.style = styles.length ? styles : null; body.builtin = builtins.length ? builtins : null;
    body.masks = masks;
  }
  if (body.builtin === null && body.method === "fast") body.style_strength = Number($("strength").value);
  if (body.method === "gatys") {
    body.content_weight = Number($("content").value);
    body.iterations = Number($("iterations").value);
  }
  return body;
}

// ------------------------------------------------------------------------------------ masks

const masking = () => $("mask-on").checked;
const choice = () => ({ style: state.style, builtin: state.builtin, title: $("style-chosen").textContent });

// A style was picked: it is the chosen style, and with masks the selected region's style.
function chosen(text) {
  $("style-chosen").textContent = text;
  if (masking() && painter.regions.length) { painter.regions[painter.active].choice = choice(); drawRegions(); }
}

function startMasks() {
  const on = masking() && state.photo && (state.style || state.builtin !== null);
  if (masking() && !on) {
    $("mask-on").checked = false;
    showError(new Error("choose a photo and a style first, then paint where the style goes"));
  }
  $("mask-tools").hidden = !on; $("paint").hidden = !on;
  if (on) {
    $("paint-photo").src = `/api/images/${state.photo.id}.jpg`;
    painter.reset(state.photo.width, state.photo.height, choice());
    drawRegions();
  }
  settingsChanged();
}

function drawRegions() {
  const list = $("regions");
  list.replaceChildren();
  painter.regions.forEach((region, index) => {
    const button = document.createElement("button");
    button.type = "button"; button.dataset.region = String(index);
    button.setAttribute("aria-pressed", String(index === painter.active));
    const swatch = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = region.colour;
    button.append(swatch, region.choice.title.replace(/^Style: /, "") + (region.painted ? "" : " (not painted yet)"));
    button.addEventListener("click", () => { painter.active = index; erasing(false); drawRegions(); });
    list.append(button);
  });
  $("region-add").disabled = painter.regions.length >= MASK_COLOURS.length;
}

function erasing(on) {
  painter.erasing = on;
  $("mask-erase").setAttribute("aria-pressed", String(on));
}

function strokeEnded() {
  drawRegions();
  settingsChanged();
}

function syncOutputs() {
  $("strength-out").textContent = Number($("strength").value).toFixed(2);
  $("content-out").textContent = Number($("content").value).toFixed(2);
  $("size-out").textContent = `${$("size").value} px`;
  const fast = method() === "fast";
  $("strength").disabled = state.builtin !== null;
  $("content").disabled = fast;
  $("iterations-row").hidden = fast;
}

function settingsChanged() {
  syncOutputs();
  if (method() === "fast" && $("live-preview").checked && !state.live) schedulePreview();
}

const schedulePreview = debounce(preview, 150);

async function preview() {
  if (!state.photo || (!state.style && state.builtin === null)) return;
  if (masking() && painter.painted && !painter.complete) {  // a region with no paint is refused
    status("Paint every style's region to see the preview");
    return;
  }
  if (state.previewBusy) { state.previewAgain = true; return; }
  state.previewBusy = true;
  const started = performance.now();
  try {
    const blob = await postJSON("/api/preview", settings());
    setPicture(blob);
    counters.previews = String(Number(counters.previews) + 1);
    status(`Preview in ${Math.round(performance.now() - started)} ms`);
  } catch (error) { showError(error); }
  state.previewBusy = false;
  if (state.previewAgain) { state.previewAgain = false; preview(); }
}

// ------------------------------------------------------------------------------------ jobs

async function stylize() {
  try {
    const job = await postJSON("/api/jobs", settings());
    follow(job.id);
  } catch (error) { showError(error); }
}

function follow(jobId) {
  if (state.events) state.events.close();
  state.job = jobId; state.losses = [];
  $("cancel").disabled = false; $("progress").hidden = false; $("details").hidden = true;
  $("progress-bar").removeAttribute("value"); $("progress-text").textContent = "Starting…";
  drawLoss();
  const events = new EventSource(`/api/jobs/${jobId}/events`);
  state.events = events;
  const on = (type, fn) => events.addEventListener(type, (message) => fn(JSON.parse(message.data)));
  on("queued", (event) => status(event.position > 1 ? `Waiting: ${event.position - 1} job(s) before this one` : "Starting…"));
  on("started", () => status(method() === "fast" ? "Stylizing…" : "Optimising…"));
  on("progress", (event) => {
    $("progress-bar").max = event.total; $("progress-bar").value = event.done;
    $("progress-text").textContent = `${event.description}: ${event.done}/${event.total}, ` +
      `${clock(event.elapsed)} so far, about ${clock(event.eta)} left`;
    if (event.loss) { state.losses.push(event.loss.total); drawLoss(); }
    if (event.image) {
      setPicture(event.image);
      counters.progressImages = String(Number(counters.progressImages) + 1);
    }
  });
  const end = (text) => { events.close(); state.events = null; $("cancel").disabled = true; status(text); };
  on("done", (event) => { end(`Done in ${event.result.seconds} s`); $("progress").hidden = true; addResult(event.result, true); });
  on("failed", (event) => { end("Failed"); showError(new Error(event.error)); });
  on("cancelled", () => end("Cancelled"));
  events.onerror = () => { if (state.events === events) { end("Lost the connection to the server"); } };
}

async function cancel() {
  if (!state.job) return;
  try { await api(`/api/jobs/${state.job}/cancel`, { method: "POST" }); } catch (error) { showError(error); }
}

function drawLoss() {
  const canvas = $("loss"), context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const values = state.losses.filter((v) => v > 0).map(Math.log);
  if (values.length < 2) return;
  const low = Math.min(...values), high = Math.max(...values), span = high - low || 1;
  context.strokeStyle = "#2f5d8a"; context.lineWidth = 2; context.beginPath();
  values.forEach((value, i) => {
    const x = 4 + (i / (values.length - 1)) * (canvas.width - 8);
    const y = 4 + (1 - (value - low) / span) * (canvas.height - 8);
    if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
}

// ------------------------------------------------------------------------------------ gallery

function addResult(record, select) {
  const button = document.createElement("button");
  button.type = "button"; button.title = `${record.content} × ${record.style}`; button.dataset.result = record.id;
  const img = document.createElement("img");
  img.src = `/api/results/${record.id}/thumb.jpg`; img.alt = button.title;
  button.append(img);
  button.addEventListener("click", () => showResult(record, button));
  $("gallery").prepend(button);
  if (select) showResult(record, button);
}

function showResult(record, button) {
  for (const other of $("gallery").children) other.setAttribute("aria-pressed", String(other === button));
  $("after").src = `/api/results/${record.id}.png`;
  $("before").src = `/api/results/${record.id}/before.jpg`;
  show("compare"); setCompare();
  $("download").href = `/api/results/${record.id}.png`;
  $("command").textContent = record.command;
  $("details").hidden = false;
}

function setCompare() {
  const share = Number($("compare-slider").value);
  $("before-clip").style.width = `${share}%`;
  $("before").style.width = `${$("after").clientWidth}px`;
}

// ------------------------------------------------------------------------------------ webcam

async function toggleLive() {
  if (state.live) { stopLive(); return; }
  if (!state.style && state.builtin === null) { showError(new Error("choose a style first")); return; }
  try {
    // The webcam takes the chosen style over the whole frame: masks are painted over a photo.
    const body = settings(); delete body.content; delete body.masks; body.method = "fast";
    body.style = state.style && state.style.id; body.builtin = state.builtin;
    if (body.builtin === null) body.style_strength = Number($("strength").value); else delete body.style_strength;
    body.max_size = Math.min(body.max_size, 256);
    const session = await postJSON("/api/live", body);
    const stream = await cameraStream();
    const video = $("camera"); video.srcObject = stream; await video.play();
    state.live = { id: session.id, stream, times: [], size: body.max_size };
    $("live").setAttribute("aria-pressed", "true"); $("fps").hidden = false;
    status("Live: stylizing the webcam");
    liveLoop(state.live);
  } catch (error) { showError(error); stopLive(); }
}

async function liveLoop(live) {
  const video = $("camera");
  while (state.live === live) {
    try {
      const blob = await frameBlob(video, live.size);
      const frame = await api(`/api/live/${live.id}/frame`, { method: "POST", body: blob });
      if (state.live !== live) break;
      setPicture(frame);
      counters.liveFrames = String(Number(counters.liveFrames) + 1);
      const now = performance.now();
      live.times.push(now); live.times = live.times.filter((t) => now - t < 2000);
      const fps = live.times.length > 1 ? (live.times.length - 1) / ((now - live.times[0]) / 1000) : 0;
      $("fps").textContent = `${fps.toFixed(1)} frames per second at ${live.size} px`;
    } catch (error) { showError(error); stopLive(); }
  }
}

function stopLive() {
  const live = state.live;
  state.live = null;
  $("live").setAttribute("aria-pressed", "false");
  if (!live) return;
  live.stream.getTracks().forEach((track) => track.stop());
  api(`/api/live/${live.id}/stop`, { method: "POST" }).catch(() => {});
  status("Ready");
}

// ------------------------------------------------------------------------------------ start

async function start() {
  $("error-close").addEventListener("click", () => { $("error").hidden = true; });
  dropZone($("photo-drop"), $("photo-file"), "photo");
  dropZone($("style-drop"), $("style-file"), "style");
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("[data-tab]")) {
        other.setAttribute("aria-selected", String(other === tab));
        $(`tab-${other.dataset.tab}`).hidden = other !== tab;
      }
    });
  }
  for (const input of ["strength", "content", "size", "color"]) $(input).addEventListener("input", settingsChanged);
  for (const radio of document.querySelectorAll('input[name="method"]')) radio.addEventListener("change", settingsChanged);
  $("compare-slider").addEventListener("input", setCompare);
  painter = new Painter($("paint-canvas"), strokeEnded);
  $("mask-on").addEventListener("change", startMasks);
  $("region-add").addEventListener("click", () => { painter.add(choice()); erasing(false); drawRegions(); });
  $("mask-erase").addEventListener("click", () => erasing(!painter.erasing));
  $("mask-clear").addEventListener("click", () => { painter.clear(); strokeEnded(); });
  const brush = () => { painter.brush = Number($("brush").value); $("brush-out").textContent = `${$("brush").value} px`; };
  $("brush").addEventListener("input", brush); brush();
  $("after").addEventListener("load", setCompare);
  window.addEventListener("resize", setCompare);
  $("stylize").addEventListener("click", stylize);
  $("cancel").addEventListener("click", cancel);
  $("live").addEventListener("click", toggleLive);
  $("photo-webcam").addEventListener("click", takePhoto);
  $("copy").addEventListener("click", () => navigator.clipboard.writeText($("command").textContent).catch(showError));
  addBuiltins();
  try {
    const info = await api("/api/info");
    $("results-folder").textContent = info.results;
    if (info.builtin) { $("builtins").replaceChildren(); addBuiltins(info.builtin); }
    $("strength").value = info.defaults.style_strength;
    $("content").value = info.defaults.content_weight;
    $("size").value = 384;
    $("iterations").value = info.defaults.iterations;
    $("color").value = info.defaults.preserve_color;
    syncOutputs();
    for (const item of info.bundled.filter((item) => item.kind === "painting")) addPainting(await bundled(item.name), item.title);
    $("photo-sample").addEventListener("click", async () => {
      try {
        const upload = await bundled(info.bundled.find((item) => item.kind === "photo").name);
        usePicked("photo", upload, `/api/images/${upload.id}.jpg`);
      } catch (error) { showError(error); }
    });
    for (const record of (await api("/api/results")).reverse()) addResult(record, false);
    status("Ready");
  } catch (error) { showError(error); }
}

start();
