#!/usr/bin/env node
// ort_run.js: run one ONNX model in ONNX Runtime (onnxruntime-node) on seeded,
// deterministic inputs and dump every output's raw bytes, so two models (an original
// and its graft round trip) can be compared bit for bit with cmp.
//
// Usage: node ort_run.js MODEL.onnx OUTDIR [--seed N] [--batch N] [--dim NAME=N]...
//                         [--ort-dir DIR]
//
//   --seed N     PRNG seed (default 1)
//   --batch N    size of a symbolic/unknown dim 0 (default 1); other symbolic dims are 1;
//                dims the model declares statically are always used as declared
//   --dim NAME=N size of the symbolic dim called NAME (wins over --batch), e.g.
//                --dim samples=16000; may be repeated
//   --ort-dir D  directory setup-ort.sh installed onnxruntime-node into
//                (default: $GRAFT_ORT_DIR; else plain require() resolution)
//
// Inputs (only the graph inputs ORT reports, i.e. not initializers), in graph order,
// all drawn from ONE mulberry32 stream seeded with --seed:
//   mulberry32(s): s = (s + 0x6D2B79F5) | 0; t = imul(s ^ s>>>15, 1 | s);
//                  t ^= t + imul(t ^ t>>>7, 61 | t); return (t ^ t>>>14) >>> 0
//   float32/float64/float16:  ((u32 >>> 8) / 2^24) * 2 - 1   -> uniform in [-1, 1), exact
//                             in float32 (float16 inputs are rounded to nearest half)
//   (u)int64/32/16:           u32 % 1000                     -> [0, 1000)
//   (u)int8:                  u32 % 100 ; bool: u32 & 1 ; string: "s" + (u32 % 1000)
// An input whose shape ORT reports as [] (scalar or unknown rank) is fed as a scalar.
//
// Outputs: OUTDIR/<name>.bin (raw little-endian tensor bytes; <name> is the output name
// with characters outside [A-Za-z0-9._-] replaced by '_', made unique), the inputs as
// OUTDIR/inputs/<name>.bin, and OUTDIR/summary.json. One line per output on stdout:
//   NAME DTYPE [DIMS] FILE
// Session: intraOpNumThreads 2, interOpNumThreads 1, sequential execution, default
// graph optimisations, ORT log level fatal (errors surface as exceptions); ORT telemetry
// off (ORT_DISABLE_TELEMETRY=1 unless already set). Errors: one line "ort_run.js: MODEL: what", exit 1.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const PROG = 'ort_run.js';
let modelArg = '-';

function die(msg) {
  process.stderr.write(`${PROG}: ${modelArg}: ${String(msg).split('\n')[0]}\n`);
  process.exit(1);
}

function usage() {
  process.stderr.write(`usage: node ${PROG} MODEL.onnx OUTDIR [--seed N] [--batch N] [--dim NAME=N]... [--ort-dir DIR]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { seed: 1, batch: 1, dims: new Map(), ortDir: process.env.GRAFT_ORT_DIR || '', pos: [] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const next = () => { if (i + 1 >= argv.length) usage(); return argv[++i]; };
    const int = (s) => { if (!/^\d+$/.test(s)) usage(); return parseInt(s, 10); };
    if (v === '--seed') a.seed = int(next());
    else if (v === '--batch') a.batch = int(next());
    else if (v === '--ort-dir') a.ortDir = next();
    else if (v === '--dim') {
      const m = /^(.+)=(\d+)$/.exec(next());
      if (!m) usage();
      a.dims.set(m[1], parseInt(m[2], 10));
    }
    else if (v === '-h' || v === '--help') usage();
    else if (v.startsWith('--')) usage();
    else a.pos.push(v);
  }
  if (a.pos.length !== 2 || a.batch < 1) usage();
  return a;
}

function loadOrt(dir) {
  // onnxruntime 1.30's native library has Microsoft 1DS telemetry on by default: it
  // litters /tmp/mat-debug-PID.log and ~/.cache/Microsoft/DeveloperTools/.onnxruntime/
  // and queues events for upload. Turn it off (before the library loads) unless asked.
  if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1';
  try {
    if (dir) {
      // resolve as if from a file inside DIR, so DIR/node_modules is searched
      return createRequire(path.join(path.resolve(dir), 'noop.js'))('onnxruntime-node');
    }
    return require('onnxruntime-node');
  } catch (e) {
    die(`cannot load onnxruntime-node${dir ? ' from ' + dir : ''} (run setup-ort.sh): ${e.message}`);
  }
}

function mulberry32(seed) {
  let s = seed >>> 0;
  return function next() {
    s = (s + 0x6D2B79F5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

// float -> IEEE half bits, round to nearest even (inputs are in [-1, 1), no overflow)
function toHalf(f) {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, f);
  const x = b.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0) return sign;                      // float32 zero/denormal -> +-0
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;             // overflow -> inf
  if (e <= 0) {                                    // half denormal
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

function makeInput(ort, meta, rng, a) {
  const dims = meta.shape.map((d, i) =>
    (typeof d === 'number' && d >= 0) ? d
      : (typeof d === 'string' && a.dims.has(d)) ? a.dims.get(d) : (i === 0 ? a.batch : 1));
  const n = dims.reduce((p, d) => p * d, 1);
  const unit = () => ((rng() >>> 8) / 16777216) * 2 - 1;
  let data;
  switch (meta.type) {
    case 'float32': data = new Float32Array(n); for (let i = 0; i < n; i++) data[i] = unit(); break;
    case 'float64': data = new Float64Array(n); for (let i = 0; i < n; i++) data[i] = unit(); break;
    case 'float16': data = new Uint16Array(n); for (let i = 0; i < n; i++) data[i] = toHalf(unit()); break;
    case 'int64': data = new BigInt64Array(n); for (let i = 0; i < n; i++) data[i] = BigInt(rng() % 1000); break;
    case 'uint64': data = new BigUint64Array(n); for (let i = 0; i < n; i++) data[i] = BigInt(rng() % 1000); break;
    case 'int32': data = new Int32Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 1000; break;
    case 'uint32': data = new Uint32Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 1000; break;
    case 'int16': data = new Int16Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 1000; break;
    case 'uint16': data = new Uint16Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 1000; break;
    case 'int8': data = new Int8Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 100; break;
    case 'uint8': data = new Uint8Array(n); for (let i = 0; i < n; i++) data[i] = rng() % 100; break;
    case 'bool': data = new Uint8Array(n); for (let i = 0; i < n; i++) data[i] = rng() & 1; break;
    case 'string': data = []; for (let i = 0; i < n; i++) data.push('s' + (rng() % 1000)); break;
    default: die(`input '${meta.name}': unsupported element type ${meta.type}`);
  }
  return new ort.Tensor(meta.type, data, dims);
}

function tensorBytes(t) {
  if (t.type === 'string') return Buffer.from(JSON.stringify(t.data));
  const d = t.data;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

function uniqueNamer() {
  const used = new Set();
  return (name) => {
    let s = String(name).replace(/[^A-Za-z0-9._-]/g, '_');
    if (s === '' || s.startsWith('.')) s = '_' + s;
    let u = s, k = 1;
    while (used.has(u.toLowerCase()) || u.toLowerCase() === 'summary.json' || u === 'inputs') u = `${s}_${k++}`;
    used.add(u.toLowerCase());
    return u;
  };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const [model, outdir] = a.pos;
  modelArg = model;
  const ort = loadOrt(a.ortDir);
  if (!fs.existsSync(model)) die('no such file');
  let session;
  try {
    session = await ort.InferenceSession.create(model, {
      intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential',
      logSeverityLevel: 4,  // errors come back as exceptions: report them once
    });
  } catch (e) { die(`cannot load model: ${e.message}`); }

  const rng = mulberry32(a.seed);
  const feeds = {};
  const summary = { model: path.basename(model), seed: a.seed, batch: a.batch,
                    dims: Object.fromEntries(a.dims),
                    ort: ort.env.versions, inputs: [], outputs: [] };
  fs.mkdirSync(path.join(outdir, 'inputs'), { recursive: true });
  const inName = uniqueNamer();
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) die(`input '${meta.name}' is not a tensor`);
    const t = makeInput(ort, meta, rng, a);
    feeds[meta.name] = t;
    const file = path.join('inputs', inName(meta.name) + '.bin');
    fs.writeFileSync(path.join(outdir, file), tensorBytes(t));
    summary.inputs.push({ name: meta.name, dtype: t.type, dims: t.dims, file });
  }

  let results;
  try { results = await session.run(feeds); } catch (e) { die(`run failed: ${e.message}`); }

  const outName = uniqueNamer();
  const lines = [];
  for (const name of session.outputNames) {
    const t = results[name];
    if (!t || t.data === undefined) die(`output '${name}' is not a tensor`);
    const file = outName(name) + '.bin';
    const bytes = tensorBytes(t);
    fs.writeFileSync(path.join(outdir, file), bytes);
    summary.outputs.push({ name, dtype: t.type, dims: t.dims, file, bytes: bytes.length });
    lines.push(`${name} ${t.type} [${t.dims.join(',')}] ${file}`);
  }
  fs.writeFileSync(path.join(outdir, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
  if (session.release) await session.release();
}

main().catch((e) => die(e && e.message ? e.message : e));
