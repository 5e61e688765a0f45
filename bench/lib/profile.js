'use strict';
/**
 * Summarises a V8 .cpuprofile (as written by `node --cpu-prof`): only samples inside a time window
 * (process.hrtime microseconds; V8 and libuv both use the monotonic clock), self and inclusive time per function,
 * self time per source file. Locations in the bundled dist/index.js are mapped back to src/ with its source map.
 */
const fs = require('node:fs');
const path = require('node:path');
const { SourceMap } = require('node:module');

function loadMap(bundle) {
  try {
    return { map: new SourceMap(JSON.parse(fs.readFileSync(`${bundle}.map`, 'utf8'))), url: `file://${bundle}` };
  } catch {
    return undefined;
  }
}

function analyseProfile(file, window, bundle, top = 15) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const sm = loadMap(bundle);
  const root = path.join(path.dirname(bundle), '..');
  const byId = new Map();
  const parent = new Map();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children || []) parent.set(c, n.id);
  }
  const info = new Map();
  const describe = (n) => {
    let d = info.get(n.id);
    if (d) return d;
    const cf = n.callFrame;
    let where = cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : '(native)';
    let file = cf.url ? cf.url.replace(/^file:\/\//, '') : '(native / VM)';
    let project = false;
    if (sm && cf.url === sm.url) {
      const e = sm.map.findEntry(cf.lineNumber, cf.columnNumber);
      if (e && e.originalSource) {
        const orig = e.originalSource.replace(/^file:\/\//, '');
        const at = orig.lastIndexOf('/src/');
        const src = at >= 0 ? orig.slice(at + 1) : path.relative(root, orig);
        where = `${src}:${e.originalLine + 1}`;
        file = src;
        project = true;
      }
    } else if (file.includes('node_modules')) {
      file = file.slice(file.lastIndexOf('node_modules') + 13).split('/').slice(0, 1).join('/') + ' (dependency)';
    } else if (file.startsWith('node:')) {
      file = 'node core (' + file.replace(/^node:/, '').split('/')[0] + ')';
    } else if (cf.url) {
      file = path.relative(root, file);
    }
    d = { name: cf.functionName || '(anonymous)', where, file, project, key: `${cf.functionName}|${where}` };
    info.set(n.id, d);
    return d;
  };
  const self = new Map();
  const total = new Map();
  const files = new Map();
  let t = prof.startTime;
  let samples = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    if (window && (t < window[0] || t > window[1])) continue;
    samples++;
    const n = byId.get(prof.samples[i]);
    const d = describe(n);
    self.set(d.key, { d, c: (self.get(d.key)?.c || 0) + 1 });
    files.set(d.file, (files.get(d.file) || 0) + 1);
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const x = describe(byId.get(id));
      if (seen.has(x.key)) continue;
      seen.add(x.key);
      total.set(x.key, { d: x, c: (total.get(x.key)?.c || 0) + 1 });
    }
  }
  const pct = (c) => (100 * c) / Math.max(1, samples);
  const list = (m, filter = () => true) => [...m.values()].filter((x) => filter(x.d)).sort((a, b) => b.c - a.c).slice(0, top)
    .map((x) => ({ name: x.d.name, where: x.d.where, pct: pct(x.c) }));
  return {
    file,
    samples,
    topSelf: list(self),
    topTotal: list(total, (d) => d.project),
    byFile: [...files.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([f, c]) => ({ file: f, pct: pct(c) })),
  };
}

module.exports = { analyseProfile };

if (require.main === module) {
  const [file, bundle] = process.argv.slice(2);
  console.log(JSON.stringify(analyseProfile(file, undefined, path.resolve(bundle || 'dist/index.js')), null, 2));
}
