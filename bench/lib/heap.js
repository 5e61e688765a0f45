'use strict';
/** Compares two V8 heap snapshots: bytes and objects added per device, grouped by constructor / type name. */
const fs = require('node:fs');

function aggregate(file) {
  const snap = JSON.parse(fs.readFileSync(file, 'utf8'));
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const out = new Map();
  const nodes = snap.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]];
    let name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[nodes[i + iName]] : `(${type})`;
    if (type === 'closure') name = `closure ${name || '(anonymous)'}`;
    if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const e = out.get(name) || { count: 0, size: 0 };
    e.count++;
    e.size += nodes[i + iSize];
    out.set(name, e);
  }
  return out;
}

/** Top entries of (after - before) / devices. */
function heapDiff(beforeFile, afterFile, devices, top = 12) {
  const a = aggregate(beforeFile);
  const b = aggregate(afterFile);
  const rows = [];
  let total = 0;
  for (const [name, e] of b) {
    const base = a.get(name) || { count: 0, size: 0 };
    const size = (e.size - base.size) / devices;
    const count = (e.count - base.count) / devices;
    total += size;
    rows.push({ name, bytes: size, objects: count });
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  return { bytesPerDevice: total, top: rows.slice(0, top) };
}

module.exports = { heapDiff };
