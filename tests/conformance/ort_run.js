#!/usr/bin/env node
// ort_run.js: run one ONNX model in ONNX Runtime (onnxruntime-node) on seeded,
// deterministic inputs and dump every output's raw bytes, so two models (an original
// and its graft round trip) can be compared bit for bit with cmp.
//
// Usage: node ort_run.js MODEL.onnx OUTDIR [--seed N] [--batch N] [--dim NAME=N]...
//                         [--input NAME=FILE.npy]... [--ort-dir DIR]
//
//   --seed N     PRNG seed (default 1)
//   --batch N    size of a symbolic/unknown dim 0 (default 1); other symbolic dims are 1;
//                dims the model declares statically are always used as declared
//   --dim NAME=N size of the symbolic dim called NAME (wins over --batch), e.g.
//                --dim samples=16000; may be repeated
//   --input NAME=FILE.npy  feed graph input NAME from a .npy file (format v1/v2/v3,
//                little-endian or byte-order-free, C order; dtypes float32, float64,
//                float16, (u)int64/32/16/8, bool) instead of the generator; its dtype
//                must be the input's and its shape must fit the declared one
//                (--batch/--dim do not apply to it); may be repeated
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
// An input given with --input draws nothing from the stream: the generated inputs are
// the next draws, in graph order.
//
// Outputs: OUTDIR/<name>.bin (raw little-endian tensor bytes; <name> is the output name
// with characters outside [A-Za-z0-9._-] replaced by '_', made unique), the inputs as
// OUTDIR/inputs/<name>.bin and (except string inputs) as the same data in .npy format,
// OUTDIR/inputs/<name>.npy (v1.0, C order, little-endian; what graft-run -i reads, so it
// can run on the very same inputs), and OUTDIR/summary.json (its inputs[].file names the
// .bin). One line per output on stdout:
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
  process.stderr.write(`usage: node ${PROG} MODEL.onnx OUTDIR [--seed N] [--batch N] [--dim NAME=N]... [--input NAME=FILE.npy]... [--ort-dir DIR]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = { seed: 1, batch: 1, dims: new Map(), inputs: new Map(),
              ortDir: process.env.GRAFT_ORT_DIR || '', pos: [] };
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
    else if (v === '--input') {
      const m = /^(.+?)=(.+)$/.exec(next());
      if (!m || a.inputs.has(m[1])) usage();
      a.inputs.set(m[1], m[2]);
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

// .npy descr (kind + item size) for each ORT element type, and back
const NPY_DESCR = {
  float32: 'f4', float64: 'f8', float16: 'f2', int64: 'i8', uint64: 'u8', int32: 'i4',
  uint32: 'u4', int16: 'i2', uint16: 'u2', int8: 'i1', uint8: 'u1', bool: 'b1',
};
const NPY_ARRAY = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int64: BigInt64Array,
  uint64: BigUint64Array, int32: Int32Array, uint32: Uint32Array, int16: Int16Array,
  uint16: Uint16Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

// readNpy(file) -> { type, dims, data }: a .npy file (v1/v2/v3) as an ORT element type,
// its shape and a freshly allocated (aligned) typed array of its data
function readNpy(file) {
  let buf;
  try { buf = fs.readFileSync(file); } catch (e) { throw new Error(`${file}: ${e.message}`); }
  const bad = (what) => new Error(`${file}: not a usable .npy file: ${what}`);
  if (buf.length < 10 || buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY')
    throw bad('no .npy magic');
  const major = buf[6];
  let hlen, hstart;
  if (major === 1) { hlen = buf.readUInt16LE(8); hstart = 10; }
  else if (major === 2 || major === 3) {
    if (buf.length < 12) throw bad('truncated header');
    hlen = buf.readUInt32LE(8); hstart = 12;
  } else throw bad(`format version ${major}`);
  if (hstart + hlen > buf.length) throw bad('truncated header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', hstart, hstart + hlen);
  const descr = /['"]descr['"]\s*:\s*['"]([<>|=]?)([a-zA-Z])(\d+)['"]/.exec(header);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw bad(`header ${JSON.stringify(header.trim())}`);
  const [, order, kind, size] = descr;
  const code = kind + size;
  if (order === '>' && size !== '1') throw bad(`big-endian data ('${order}${code}')`);
  const type = Object.keys(NPY_DESCR).find((k) => NPY_DESCR[k] === code);
  if (!type) throw bad(`unsupported dtype '${order}${code}'`);
  if (fortran[1] === 'True') throw bad('Fortran order');
  const dims = shape[1].split(',').map((x) => x.trim()).filter((x) => x !== '').map((x) => {
    if (!/^\d+L?$/.test(x)) throw bad(`shape (${shape[1]})`);
    return parseInt(x, 10);
  });
  const n = dims.reduce((p, d) => p * d, 1);
  const start = hstart + hlen, nbytes = n * parseInt(size, 10);
  if (buf.length - start < nbytes)
    throw bad(`${buf.length - start} data bytes for shape (${dims.join(', ')}), expected ${nbytes}`);
  const bytes = new Uint8Array(nbytes);   // a copy: aligned, independent of buf
  bytes.set(buf.subarray(start, start + nbytes));
  const Arr = NPY_ARRAY[type];
  return { type, dims, data: new Arr(bytes.buffer, 0, n) };
}

// npyBytes(t): tensor t as a .npy v1.0 file (header padded to 64 bytes, as numpy does)
function npyBytes(t) {
  const code = NPY_DESCR[t.type];
  const order = code.endsWith('1') ? '|' : '<';
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
  let h = `{'descr': '${order}${code}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = Math.ceil((10 + h.length + 1) / 64) * 64;
  h = h + ' '.repeat(total - 10 - h.length - 1) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(h.length, 8);
  return Buffer.concat([pre, Buffer.from(h, 'latin1'), tensorBytes(t)]);
}

// fileInput(ort, meta, file): the tensor for input meta read from a .npy file
function fileInput(ort, meta, file) {
  let x;
  try { x = readNpy(file); } catch (e) { die(`input '${meta.name}': ${e.message}`); }
  if (x.type !== meta.type)
    die(`input '${meta.name}': ${file} holds ${x.type}, the model takes ${meta.type}`);
  const decl = meta.shape || [];
  const fits = decl.length === 0 ||   // [] is a scalar or an unknown rank: let ORT judge
    (decl.length === x.dims.length &&
     decl.every((d, i) => typeof d !== 'number' || d < 0 || d === x.dims[i]));
  if (!fits)
    die(`input '${meta.name}': ${file} has shape [${x.dims.join(',')}], the model declares [${decl.join(',')}]`);
  return new ort.Tensor(x.type, x.data, x.dims);
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
  const known = new Set(session.inputMetadata.map((meta) => meta.name));
  for (const name of a.inputs.keys())
    if (!known.has(name)) die(`--input ${name}: the model has no input '${name}' (it has: ${[...known].join(', ')})`);
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) die(`input '${meta.name}' is not a tensor`);
    const t = a.inputs.has(meta.name) ? fileInput(ort, meta, a.inputs.get(meta.name))
                                      : makeInput(ort, meta, rng, a);
    feeds[meta.name] = t;
    const base = path.join('inputs', inName(meta.name));
    const file = base + '.bin';
    fs.writeFileSync(path.join(outdir, file), tensorBytes(t));
    if (t.type !== 'string') fs.writeFileSync(path.join(outdir, base + '.npy'), npyBytes(t));
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
