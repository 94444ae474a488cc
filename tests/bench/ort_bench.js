#!/usr/bin/env node
// ort_bench.js: time one ONNX model's forward pass in ONNX Runtime (onnxruntime-node),
// the reference for graft-run --repeat (tests/bench/forward.sh).
//
// Usage: node ort_bench.js MODEL.onnx [--batch N] [--repeat R] [--warmup W]
//                          [--threads T] [--seed S] [--ort-dir DIR]
//
//   --batch N    size of a symbolic/unknown dim 0 (default 1); other symbolic dims are 1
//   --repeat R   timed session.run calls (default 10)
//   --warmup W   untimed session.run calls first (default 2)
//   --threads T  intraOpNumThreads (default 2); interOpNumThreads 1, sequential execution
//   --seed S     seed of the made-up inputs (default 1)
//   --shape S    the first input's dims after the batch, e.g. 3x48x192 (for a model whose
//                other dims are symbolic too)
//   --ort-dir D  directory setup-ort.sh installed onnxruntime-node into
//                (default: $GRAFT_ORT_DIR; else plain require() resolution)
//
// Inputs are made up once (floats uniform in [-1, 1), integers in [0, 10), bools 0/1,
// mulberry32 from --seed) and the same feeds are used for every call; each call's wall
// time is measured around `await session.run(feeds)` (process.hrtime). Default graph
// optimisations, ORT log level fatal, telemetry off (ORT_DISABLE_TELEMETRY=1 unless set).
// Prints one line, in graft-run --repeat's format:
//   median X ms per run over R runs (batch N: Y items/s)
// Errors: one line "ort_bench.js: MODEL: what", exit 1.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const PROG = 'ort_bench.js';
let modelArg = '-';

function die(msg) {
  process.stderr.write(`${PROG}: ${modelArg}: ${String(msg).split('\n')[0]}\n`);
  process.exit(1);
}

function usage() {
  process.stderr.write(`usage: node ${PROG} MODEL.onnx [--batch N] [--repeat R] [--warmup W] [--threads T] [--seed S] [--shape AxBx...] [--ort-dir DIR]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { batch: 1, repeat: 10, warmup: 2, threads: 2, seed: 1, shape: null,
              ortDir: process.env.GRAFT_ORT_DIR || '', pos: [] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const next = () => { if (i + 1 >= argv.length) usage(); return argv[++i]; };
    const int = (s) => { if (!/^\d+$/.test(s)) usage(); return parseInt(s, 10); };
    if (v === '--batch') a.batch = int(next());
    else if (v === '--repeat') a.repeat = int(next());
    else if (v === '--warmup') a.warmup = int(next());
    else if (v === '--threads') a.threads = int(next());
    else if (v === '--seed') a.seed = int(next());
    else if (v === '--ort-dir') a.ortDir = next();
    else if (v === '--shape') a.shape = next().split('x').map(int);
    else if (v.startsWith('-')) usage();
    else a.pos.push(v);
  }
  if (a.pos.length !== 1 || a.batch < 1 || a.repeat < 1 || a.threads < 1) usage();
  return a;
}

function loadOrt(dir) {
  if (process.env.ORT_DISABLE_TELEMETRY === undefined) process.env.ORT_DISABLE_TELEMETRY = '1';
  try {
    if (dir) return createRequire(path.join(path.resolve(dir), 'noop.js'))('onnxruntime-node');
    return require('onnxruntime-node');
  } catch (e) {
    die(`cannot load onnxruntime-node${dir ? ' from ' + dir : ''} (run setup-ort.sh): ${e.message}`);
  }
}

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function makeInput(ort, meta, rng, batch, shape) {
  if (!meta.isTensor) die(`input '${meta.name}' is not a tensor`);
  const dims = shape ? [batch, ...shape]
    : meta.shape.map((d, i) => (typeof d === 'number' && d >= 0) ? d : (i === 0 ? batch : 1));
  const n = dims.reduce((p, d) => p * d, 1);
  const unit = () => ((rng() >>> 8) / 16777216) * 2 - 1;
  let data;
  switch (meta.type) {
    case 'float32': data = Float32Array.from({ length: n }, unit); break;
    case 'float64': data = Float64Array.from({ length: n }, unit); break;
    case 'int64': data = BigInt64Array.from({ length: n }, () => BigInt(rng() % 10)); break;
    case 'int32': data = Int32Array.from({ length: n }, () => rng() % 10); break;
    case 'bool': data = Uint8Array.from({ length: n }, () => rng() & 1); break;
    default: die(`input '${meta.name}': unsupported element type ${meta.type}`);
  }
  return new ort.Tensor(meta.type, data, dims);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  modelArg = a.pos[0];
  const ort = loadOrt(a.ortDir);
  let session;
  try {
    session = await ort.InferenceSession.create(modelArg, {
      intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
      logSeverityLevel: 4,
    });
  } catch (e) { die(`cannot load model: ${e.message}`); }
  const rng = mulberry32(a.seed);
  const feeds = {};
  session.inputMetadata.forEach((meta, k) => {
    feeds[meta.name] = makeInput(ort, meta, rng, a.batch, k === 0 ? a.shape : null);
  });
  const t = [];
  try {
    for (let i = 0; i < a.warmup; i++) await session.run(feeds);
    for (let i = 0; i < a.repeat; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      t.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  } catch (e) { die(`run failed: ${e.message}`); }
  t.sort((x, y) => x - y);
  const med = t[Math.floor(a.repeat / 2)];   // the same pick as graft-run's
  process.stdout.write(`median ${(med * 1e3).toFixed(3)} ms per run over ${a.repeat} runs ` +
                       `(batch ${a.batch}: ${(a.batch / med).toFixed(1)} items/s)\n`);
  if (session.release) await session.release();
}

main().catch((e) => die(e && e.message ? e.message : e));
