// The adain-jax page: collects the images and controls, posts them to /api/stylize, shows the PNG.
// Plain JavaScript, no libraries and nothing from outside (the server's CSP forbids it anyway).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { content: null, styles: [], mask: null, info: null, resultUrl: null, contentUrl: null };

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function setContent(file) {
  state.content = file;
  $("content-name").textContent = file ? file.name : "none chosen";
  if (state.contentUrl) URL.revokeObjectURL(state.contentUrl);
  state.contentUrl = file ? URL.createObjectURL(file) : null;
  $("content-preview").src = state.contentUrl || "";
}

function addStyle(file) {
  const max = state.info ? state.info.max_styles : 8;
  if (state.styles.length >= max) {
    setStatus(`at most ${max} styles`, true);
    return;
  }
  state.styles.push({ file, url: URL.createObjectURL(file), weight: 1 });
  renderStyles();
}

function renderStyles() {
  const list = $("style-list");
  list.replaceChildren();
  const showWeights = state.styles.length > 1 && !state.mask;
  state.styles.forEach((style, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = style.url;
    img.alt = "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${i + 1}. ${style.file.name}`;
    li.append(img, name);
    if (showWeights) {
      const weight = document.createElement("input");
      weight.type = "number";
      weight.min = "0";
      weight.step = "0.1";
      weight.value = String(style.weight);
      weight.title = "interpolation weight";
      weight.className = "style-weight";
      weight.addEventListener("input", () => { style.weight = weight.value; });
      li.append(weight);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "remove this style";
    remove.addEventListener("click", () => {
      URL.revokeObjectURL(style.url);
      state.styles.splice(i, 1);
      renderStyles();
    });
    li.append(remove);
    list.append(li);
  });
  $("weights-hint").hidden = state.styles.length < 2;
}

function setMask(file) {
  state.mask = file;
  $("mask-name").textContent = file ? file.name : "no mask";
  $("mask-clear").hidden = !file;
  if (!file) $("mask-file").value = "";
  renderStyles();
}

async function exampleFile(kind, name) {
  const response = await fetch(`/api/examples/${kind}/${encodeURIComponent(name)}`);
  if (!response.ok) throw new Error(`could not load example ${name}`);
  const blob = await response.blob();
  return new File([blob], name, { type: blob.type });
}

function renderExamples(kind, names, onPick) {
  const box = $(`${kind}-examples`);
  box.replaceChildren();
  for (const name of names) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = name;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = name;
    img.src = `/api/examples/${kind}/${encodeURIComponent(name)}`;
    button.append(img);
    button.addEventListener("click", async () => {
      try { onPick(await exampleFile(kind, name)); } catch (e) { setStatus(e.message, true); }
    });
    box.append(button);
  }
}

function filenameFrom(response) {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  return match ? match[1] : "stylized.png";
}

// A style the server has seen is sent by its hash (X-Style-Hashes of an earlier answer), not re-uploaded.
function buildForm(styles, useHashes) {
  const form = new FormData();
  form.append("content", state.content, state.content.name);
  for (const style of styles) {
    if (useHashes && style.hash) form.append("style_hash", style.hash);
    else form.append("style", style.file, style.file.name);
  }
  form.append("alpha", $("alpha").value);
  if (state.mask) form.append("mask", state.mask, state.mask.name);
  else if (styles.length > 1) form.append("style_weights", styles.map((s) => s.weight).join(","));
  form.append("preserve_color", $("preserve-color").checked ? "true" : "false");
  form.append("crop", $("crop").checked ? "true" : "false");
  form.append("content_size", $("content-size").value || "0");
  form.append("style_size", $("style-size").value || "0");
  return form;
}

async function stylize() {
  if (!state.content) return setStatus("choose a content image", true);
  if (!state.styles.length) return setStatus("choose at least one style image", true);
  const styles = state.styles.slice();

  const button = $("stylize");
  button.disabled = true;
  setStatus("stylizing…");
  const start = performance.now();
  try {
    let response = await fetch("/api/stylize", { method: "POST", body: buildForm(styles, true) });
    if (response.status === 404 && styles.some((s) => s.hash)) {
      // The server no longer has one of them (it keeps recently used styles): upload them again.
      styles.forEach((s) => { delete s.hash; });
      response = await fetch("/api/stylize", { method: "POST", body: buildForm(styles, false) });
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      setStatus(message, true);
      return;
    }
    const hashes = (response.headers.get("X-Style-Hashes") || "").split(",");
    styles.forEach((s, i) => { if (hashes[i]) s.hash = hashes[i]; });
    const blob = await response.blob();
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(blob);
    const result = $("result");
    await new Promise((resolve, reject) => {
      result.onload = resolve;
      result.onerror = () => reject(new Error("the answer is not a displayable image"));
      result.src = state.resultUrl;
    });
    const link = $("download");
    link.href = state.resultUrl;
    link.download = filenameFrom(response);
    link.hidden = false;
    const seconds = ((performance.now() - start) / 1000).toFixed(2);
    setStatus(`done in ${seconds} s (${result.naturalWidth}×${result.naturalHeight})`);
    result.dataset.done = String(Date.now());
  } catch (e) {
    setStatus(`request failed: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function init() {
  $("content-file").addEventListener("change", (e) => setContent(e.target.files[0] || null));
  $("style-files").addEventListener("change", (e) => {
    for (const file of e.target.files) addStyle(file);
    e.target.value = "";
  });
  $("mask-file").addEventListener("change", (e) => setMask(e.target.files[0] || null));
  $("mask-clear").addEventListener("click", () => setMask(null));
  $("alpha").addEventListener("input", () => { $("alpha-value").textContent = Number($("alpha").value).toFixed(2); });
  $("stylize").addEventListener("click", stylize);
  $("curl-url").textContent = `${location.origin}/api/stylize`;

  try {
    const info = await (await fetch("/api/info")).json();
    state.info = info;
    const weights = $("weights");
    weights.textContent = info.weights;
    weights.classList.toggle("random", info.random_weights);
    $("random-banner").hidden = !info.random_weights;
    $("result-note").textContent = info.random_weights ? "made with RANDOM WEIGHTS" : "";
    $("max-size").textContent = `${info.max_size} px`;
    for (const id of ["content-size", "style-size"]) $(id).max = String(info.max_size);
  } catch (e) {
    setStatus("cannot reach the server", true);
  }
  try {
    const examples = await (await fetch("/api/examples")).json();
    renderExamples("content", examples.content, setContent);
    renderExamples("style", examples.style, addStyle);
    renderExamples("mask", examples.mask, setMask);
  } catch (e) { /* no examples folder */ }
  document.body.dataset.ready = "true";
}

init();
