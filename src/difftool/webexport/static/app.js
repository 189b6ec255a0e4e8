// difftool sprites in the browser: the one-file generator (generator.onnx) on onnxruntime-web (wasm).
// Inputs follow model.json: x_T [B,C,H,W], context [B,K] + guidance [] (conditional), noise [N,B,C,H,W]
// (stochastic samplers); output images uint8 [B,H,W,C]. Noise is seeded per sprite: row i uses seed + i,
// x_T first, then one draw per noisy step (as difftool's Python runtime; a different generator, so the
// values differ from numpy's). Test hook: ?noise=URL of a float32 .bin (x_T then noise, graph layout), or
// window.difftool.generate({xT, noise, ...}).
import * as ort from "./ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // no cross-origin isolation under a plain static server
ort.env.wasm.proxy = false;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { meta: null, session: null, runs: 0, lastImages: null, lastMs: null, firstMs: null };

// -- seeded standard normals: mulberry32 + Box-Muller, one stream per sprite --------------------------------
function rng(seed) {
  let a = (seed ^ 0x9e3779b9) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussians(seed) {
  const u = rng(seed);
  let spare = null;
  return () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    let u1 = u();
    while (u1 <= 0) u1 = u();
    const r = Math.sqrt(-2 * Math.log(u1)), th = 2 * Math.PI * u();
    spare = r * Math.sin(th);
    return r * Math.cos(th);
  };
}

function seededNoise(n, seed) {
  const m = state.meta, chw = m.channels * m.size * m.size, steps = m.noise_steps;
  const xT = new Float32Array(n * chw), noise = new Float32Array(steps * n * chw);
  for (let b = 0; b < n; b++) {
    const g = gaussians(seed + b);
    for (let k = 0; k < chw; k++) xT[b * chw + k] = g();
    for (let j = 0; j < steps; j++) {
      const off = (j * n + b) * chw;
      for (let k = 0; k < chw; k++) noise[off + k] = g();
    }
  }
  return { xT, noise };
}

// -- inputs ------------------------------------------------------------------------------------------------
class InputError extends Error {}

function contextRows(n) {
  const m = state.meta, k = m.num_classes, vec = new Float32Array(k);
  const mix = $("mix").value.trim(), choice = $("class").value;
  const spec = mix || (choice === "(none)" ? "" : choice);
  for (const item of spec ? spec.split(",") : []) {
    const [name, weight] = item.split("=").map((s) => s.trim());
    let idx = m.class_names.indexOf(name);
    if (idx < 0 && /^\d+$/.test(name) && +name < k) idx = +name;
    if (idx < 0) throw new InputError(`unknown class "${name}"; this model knows: ${m.class_names.join(", ")}`);
    const w = weight === undefined ? 1 : Number(weight);
    if (!Number.isFinite(w)) throw new InputError(`bad weight "${weight}" for ${name}`);
    vec[idx] += w;
  }
  const ctx = new Float32Array(n * k);
  for (let b = 0; b < n; b++) ctx.set(vec, b * k);
  return ctx;
}

function intField(id, lo, hi) {
  const v = Number($(id).value);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new InputError(`${id} must be a whole number in ${lo}..${hi}`);
  return v;
}

function readSettings() {
  const guidance = Number($("guidance").value.trim() === "" ? NaN : $("guidance").value);
  if (state.meta.num_classes && !Number.isFinite(guidance)) {
    throw new InputError(`guidance must be a finite number, got "${$("guidance").value}"`);
  }
  return { n: intField("count", 1, 256), seed: intField("seed", 0, 2 ** 31), guidance,
           cols: intField("cols", 1, 64), scale: intField("scale", 1, 32) };
}

async function fixedNoise(url, n) {
  const m = state.meta, chw = m.channels * m.size * m.size;
  const res = await fetch(url);
  if (!res.ok) throw new InputError(`noise file ${url}: HTTP ${res.status}`);
  const all = new Float32Array(await res.arrayBuffer());
  const want = n * chw * (1 + m.noise_steps);
  if (all.length !== want) {
    throw new InputError(`noise file ${url} has ${all.length} floats; ${n} sprites need ${want} (x_T then noise)`);
  }
  return { xT: all.subarray(0, n * chw), noise: all.subarray(n * chw) };
}

// -- running and drawing -------------------------------------------------------------------------------
async function run({ n, context, guidance, xT, noise }) {
  const m = state.meta, c = m.channels, s = m.size;
  const feeds = { x_T: new ort.Tensor("float32", xT, [n, c, s, s]) };
  if (m.num_classes) {
    feeds.context = new ort.Tensor("float32", context, [n, m.num_classes]);
    feeds.guidance = new ort.Tensor("float32", new Float32Array([guidance]), []);
  }
  if (m.noise_steps) feeds.noise = new ort.Tensor("float32", noise, [m.noise_steps, n, c, s, s]);
  const t0 = performance.now();
  const out = await state.session.run(feeds, ["images"]);
  const ms = performance.now() - t0;
  const images = out.images.data;
  if (!(images instanceof Uint8Array) || images.length !== n * s * s * c) throw new Error("unexpected output from the generator");
  return { images, ms };
}

function draw(images, n, cols, scale) {
  const m = state.meta, s = m.size, c = m.channels;
  cols = Math.min(cols, n);
  const rows = Math.ceil(n / cols), w = cols * (s + 1) + 1, h = rows * (s + 1) + 1;
  const grid = new ImageData(w, h);
  for (let i = 3; i < grid.data.length; i += 4) grid.data[i] = 255; // black gutters
  for (let b = 0; b < n; b++) {
    const r = Math.floor(b / cols), q = b % cols;
    for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) {
      const src = ((b * s + y) * s + x) * c, dst = ((1 + r * (s + 1) + y) * w + 1 + q * (s + 1) + x) * 4;
      for (let k = 0; k < 3; k++) grid.data[dst + k] = images[src + (c >= 3 ? k : 0)];
      grid.data[dst + 3] = c === 4 ? images[src + 3] : 255;
    }
  }
  const small = new OffscreenCanvas(w, h);
  small.getContext("2d").putImageData(grid, 0, 0);
  const canvas = $("sprites");
  canvas.width = w * scale;
  canvas.height = h * scale;
  canvas.hidden = false;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false; // nearest neighbour
  ctx.drawImage(small, 0, 0, w * scale, h * scale);
  state.layout = { cols, scale, s, w, h };
}

function showError(err) {
  const box = $("error");
  box.textContent = `error: ${err && err.message ? err.message : err}`;
  box.hidden = false;
  $("sprites").hidden = true;
  $("status").textContent = "";
}

async function generate(opts = {}) {
  $("error").hidden = true;
  $("generate").disabled = true;
  try {
    const ui = readSettings();
    const n = opts.n ?? ui.n, guidance = opts.guidance ?? ui.guidance;
    if (state.meta.num_classes && !Number.isFinite(guidance)) throw new InputError(`guidance must be a finite number, got ${guidance}`);
    const context = opts.context ?? (state.meta.num_classes ? contextRows(n) : null);
    let noise = opts.xT ? { xT: opts.xT, noise: opts.noise } : null;
    if (!noise && params.get("noise")) noise = await fixedNoise(params.get("noise"), n);
    if (!noise) noise = seededNoise(n, opts.seed ?? ui.seed);
    const result = await run({ n, context, guidance, ...noise });
    draw(result.images, n, ui.cols, ui.scale);
    state.runs += 1;
    state.lastImages = result.images;
    state.lastMs = result.ms;
    if (state.firstMs === null) state.firstMs = result.ms;
    $("status").textContent = `${n} sprites in ${result.ms.toFixed(0)} ms (${state.meta.sampler}` +
      (state.meta.num_classes ? `, guidance ${guidance}` : "") + `; first run ${state.firstMs.toFixed(0)} ms)`;
    $("download").disabled = false;
    return { images: Array.from(result.images), ms: result.ms, runs: state.runs };
  } catch (err) {
    showError(err);
    return { error: String(err && err.message ? err.message : err) };
  } finally {
    $("generate").disabled = false;
  }
}

function download() {
  $("sprites").toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `sprites-seed${$("seed").value}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, "image/png");
}

function setupControls(m) {
  const select = $("class");
  for (const name of [...m.class_names, "(none)"]) select.add(new Option(name, name));
  if (!m.num_classes) { select.disabled = true; $("mix").disabled = true; $("guidance").disabled = true; }
  $("guidance").value = params.get("guidance") ?? String(m.guidance);
  for (const id of ["class", "mix", "seed", "count", "cols", "scale"]) if (params.has(id)) $(id).value = params.get(id);
  $("about").textContent = `${m.size}×${m.size} sprites, ${m.sampler}, onnxruntime-web ${m.ort_web} (wasm)` +
    (m.credit ? ` · ${m.credit}` : "");
  $("generate").addEventListener("click", () => generate());
  $("download").addEventListener("click", download);
}

async function start() {
  const t0 = performance.now();
  const res = await fetch("model.json");
  if (!res.ok) throw new Error(`model.json: HTTP ${res.status}`);
  state.meta = await res.json();
  setupControls(state.meta);
  state.session = await ort.InferenceSession.create(state.meta.generator, { executionProviders: ["wasm"] });
  state.loadMs = performance.now() - t0;
  $("generate").disabled = false;
  $("status").textContent = `model loaded in ${state.loadMs.toFixed(0)} ms`;
}

const ready = start().catch((err) => { showError(err); throw err; });
window.difftool = {
  ready: ready.then(() => ({ loadMs: state.loadMs, meta: state.meta }), (err) => ({ error: String(err.message || err) })),
  generate,
  state,
  // The drawn canvas sampled at each sprite pixel: (B, H, W, 3) values, to compare with the images output.
  canvasPixels() {
    const { cols, scale, s, w } = state.layout, n = state.lastImages.length / (s * s * state.meta.channels);
    const data = $("sprites").getContext("2d").getImageData(0, 0, w * scale, $("sprites").height).data;
    const out = [];
    for (let b = 0; b < n; b++) for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) {
      const r = Math.floor(b / cols), q = b % cols;
      const px = ((1 + r * (s + 1) + y) * scale * (w * scale) + (1 + q * (s + 1) + x) * scale) * 4;
      out.push(data[px], data[px + 1], data[px + 2]);
    }
    return out;
  },
};
if (params.get("autorun") === "1") ready.then(() => generate(), () => {});
