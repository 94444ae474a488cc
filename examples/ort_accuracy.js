#!/usr/bin/env node
// ort_accuracy.js: the accuracy of an ONNX classifier in ONNX Runtime on a graft dataset,
// so that an example can check that the model it exported computes in the deployment
// runtime what graft-eval measured.
//
// Usage: node ort_accuracy.js MODEL.onnx DATA.graft [--batch N] [--ort-dir DIR]
//
// DATA.graft is what graft-data writes: a tar whose manifest names the tensors x (float
// [N, ...] samples) or x:NAME (named inputs, float or int64: graft-data text's) and y
// (int64 [N] labels), stored raw little-endian (docs/format.md).  The model's first input
// gets batches of x, each named input the model input of its name; its first output is
// taken as logits, and the prediction is the arg max (the first on ties, as graft-eval);
// an output of one value a sample is a detector's probability of class 1 (a Sigmoid's,
// graft-head --sigmoid), predicted 1 from 0.5 on, and its values are given as "scores".
// Prints one JSON object: {"ort": VERSION, "accuracy": A, "count": N, "correct": C,
// "confusion": [[...]], "predictions": [...]} (confusion: rows the true class, columns
// the predicted one, as graft-eval --json gives it).
// --ort-dir: the folder tests/conformance/setup-ort.sh installed onnxruntime-node into.
'use strict';
const fs = require('fs');
const path = require('path');

function die(msg) {
    process.stderr.write(`ort_accuracy.js: ${msg}\n`);
    process.exit(1);
}

// The members of an uncompressed tar (ustar or pax) as name -> Buffer.
function tarMembers(buf) {
    const out = new Map();
    let off = 0, paxName = null;
    while (off + 512 <= buf.length) {
        const h = buf.subarray(off, off + 512);
        if (h.every(b => b === 0)) break;
        const str = (a, b) => h.subarray(a, b).toString('latin1').replace(/\0.*$/s, '');
        const size = parseInt(str(124, 136).trim() || '0', 8);
        const type = String.fromCharCode(h[156] || 48);
        const prefix = str(345, 500);
        let name = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
        const data = buf.subarray(off + 512, off + 512 + size);
        if (data.length !== size) die('truncated archive');
        off += 512 + Math.ceil(size / 512) * 512;
        if (type === 'x') {             // pax header: take its path
            const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
            paxName = m ? m[1] : null;
            continue;
        }
        if (paxName) name = paxName;
        paxName = null;
        if (type === '0' || type === '\0') out.set(name, data);
    }
    return out;
}

function readDataset(file) {
    const members = tarMembers(fs.readFileSync(file));
    const manifest = members.get('manifest');
    if (!manifest) die(`${file}: no manifest (not a graft archive)`);
    const t = {};
    for (const line of manifest.toString('utf8').split('\n')) {
        // tensor MEMBER NAME DTYPE [DIMS] ...
        const f = line.split(' ');
        if (f[0] !== 'tensor') continue;
        const dims = f[4].replace(/[[\]]/g, '').split(',').filter(s => s).map(Number);
        const data = members.get(f[1]);
        if (!data) die(`${file}: member ${f[1]} missing`);
        t[decodeURIComponent(f[2])] = { dtype: f[3], dims, data };
    }
    // the inputs: x (float), or the named ones x:NAME (float or int64), fed by name
    const inputs = [];
    for (const k of Object.keys(t)) {
        if (k !== 'x' && !k.startsWith('x:')) continue;
        const e = t[k], raw = e.data.buffer.slice(e.data.byteOffset, e.data.byteOffset + e.data.length);
        const a = e.dtype === 'float' ? new Float32Array(raw)
                : e.dtype === 'int64' ? new BigInt64Array(raw) : null;
        if (!a) die(`${file}: input ${k} is ${e.dtype}, not float or int64`);
        if (a.length !== e.dims.reduce((u, v) => u * v, 1)) die(`${file}: ${k} does not match its shape`);
        inputs.push({ name: k === 'x' ? null : k.slice(2), type: e.dtype === 'float' ? 'float32' : 'int64',
                      data: a, sample: e.dims.slice(1) });
    }
    if (!inputs.length) die(`${file}: no tensor x and no x:NAME`);
    if (!t.y || t.y.dtype !== 'int64') die(`${file}: no int64 labels y`);
    const n = t[inputs[0].name === null ? 'x' : 'x:' + inputs[0].name].dims[0];
    const y = new BigInt64Array(t.y.data.buffer.slice(t.y.data.byteOffset,
                                                      t.y.data.byteOffset + t.y.data.length));
    if (y.length !== n) die(`${file}: x and y do not match their shapes`);
    return { inputs, y, n };
}

async function main() {
    const args = process.argv.slice(2);
    let batch = 256, ortDir = process.env.GRAFT_ORT_DIR || null;
    const pos = [];
    for (let i = 0; i < args.length; i++) {
        if (args[i] === '--batch') batch = Number(args[++i]);
        else if (args[i] === '--ort-dir') ortDir = args[++i];
        else pos.push(args[i]);
    }
    if (pos.length !== 2 || !(batch >= 1))
        die('usage: node ort_accuracy.js MODEL.onnx DATA.graft [--batch N] [--ort-dir DIR]');
    process.env.ORT_DISABLE_TELEMETRY = '1';
    const ort = require(ortDir ? path.join(path.resolve(ortDir), 'node_modules', 'onnxruntime-node')
                               : 'onnxruntime-node');
    const d = readDataset(pos[1]);
    const session = await ort.InferenceSession.create(pos[0], { intraOpNumThreads: 2 });
    const predictions = [], scores = [];
    let correct = 0, confusion = null;
    for (let s = 0; s < d.n; s += batch) {
        const b = Math.min(batch, d.n - s), feeds = {};
        for (const x of d.inputs) {
            const per = x.sample.reduce((u, v) => u * v, 1);
            const name = x.name === null ? session.inputNames[0] : x.name;
            if (!session.inputNames.includes(name)) continue;   // not the model's
            feeds[name] = new ort.Tensor(x.type, x.data.subarray(s * per, (s + b) * per), [b, ...x.sample]);
        }
        const out = await session.run(feeds);
        const logits = out[session.outputNames[0]];
        const k = logits.data.length / b;
        if (!confusion) {
            let classes = k === 1 ? 2 : k;
            for (const v of d.y) classes = Math.max(classes, Number(v) + 1);
            confusion = Array.from({ length: classes }, () => new Array(classes).fill(0));
        }
        for (let i = 0; i < b; i++) {
            let best = 0;
            for (let c = 1; c < k; c++)
                if (logits.data[i * k + c] > logits.data[i * k + best]) best = c;
            if (k === 1) {
                scores.push(logits.data[i]);
                best = logits.data[i] >= 0.5 ? 1 : 0;
            }
            predictions.push(best);
            confusion[Number(d.y[s + i])][best]++;
            correct += BigInt(best) === d.y[s + i];
        }
    }
    const result = { ort: ort.env.versions.node, accuracy: correct / d.n, count: d.n, correct,
                     confusion, predictions };
    if (scores.length) result.scores = scores;
    process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(e => die(e.message));
