#!/usr/bin/env node
'use strict';
/*
 * Checks this package against the Node-RED Flow Library scorecard rules and exits non-zero with the list of
 * rules that fail.
 *
 *   node scripts/check-scorecard.js           human-readable report
 *   node scripts/check-scorecard.js --json    [{ id, rule, ok, detail, skipped? }]
 *   --dir <path>   check the package in another directory
 *   --offline      skip the rule that needs the npm registry
 *
 * The "outdated" rule asks the npm registry (`npm outdated --json`); when the registry cannot be reached that
 * rule is reported as skipped, not passed.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const semver = require('semver');

const argv = process.argv.slice(2);
const dirArg = argv.indexOf('--dir');
const root = dirArg !== -1 && argv[dirArg + 1] ? path.resolve(argv[dirArg + 1]) : path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

const MAX_DEPENDENCIES = 6;
// Node versions each Node-RED major requires (from the engines field of node-red's package.json).
const NODE_RED_NODE = [
  { redMajor: 3, node: '>=14' },
  { redMajor: 4, node: '>=18.5' },
  { redMajor: 5, node: '>=22.9' },
];

const results = [];
function check(id, rule, fn) {
  try {
    const r = fn();
    results.push({ id, rule, ok: r.ok, detail: r.detail || '', skipped: r.skipped || undefined });
  } catch (err) {
    results.push({ id, rule, ok: false, detail: err.message });
  }
}
const pass = (detail) => ({ ok: true, detail });
const fail = (detail) => ({ ok: false, detail });

check('license', 'package.json has a license', () =>
  typeof pkg.license === 'string' && pkg.license.trim() !== '' ? pass(pkg.license) : fail('no "license" field'));

check('repository', 'package.json has a repository', () => {
  const url = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository && pkg.repository.url;
  return url ? pass(url) : fail('no "repository" field (with a url)');
});

check('scoped-name', 'the package name is scoped (@scope/name)', () =>
  /^@[a-z0-9-~][a-z0-9-._~]*\/[a-z0-9-~][a-z0-9-._~]*$/.test(pkg.name) ? pass(pkg.name) : fail(`"${pkg.name}" is not a scoped name`));

check('keyword', 'keywords include "node-red"', () =>
  Array.isArray(pkg.keywords) && pkg.keywords.includes('node-red') ? pass('') : fail('"node-red" is not in "keywords"'));

check('node-red-version', 'node-red.version is set and admits current Node-RED', () => {
  const range = pkg['node-red'] && pkg['node-red'].version;
  if (!range) return fail('no "node-red": { "version": ... } field');
  if (!semver.validRange(range)) return fail(`node-red.version "${range}" is not a semver range`);
  const missing = ['4.1.0', '5.0.0'].filter((v) => !semver.satisfies(v, range));
  return missing.length ? fail(`node-red.version "${range}" excludes Node-RED ${missing.join(', ')}`) : pass(range);
});

// Runtime dependencies whose declared engines are narrower than ours but which this package's own suite runs on
// every Node version we promise to support (CI on Node 20; the install test on Node 22). Reported, not failed.
const ENGINES_VERIFIED_BY_TESTS = {
  'node-dtls-client': 'declares node >=22 (its ES module build); the suite of this package runs it on Node 20 (outbound pool mode, simulated devices) and the install test loads the package on Node 22',
  redis: 'declares node >=20 (6.x; 5.x allows 18 but is then reported as outdated); the suite of this package runs it on Node 20 (test/cluster*.test.ts, a real redis-server) and the install test loads the package on Node 22; it is loaded only when a Redis store is set',
};

check('engines-node', 'engines.node matches the supported Node-RED versions and the runtime dependencies', () => {
  const ours = pkg.engines && pkg.engines.node;
  if (!ours) return fail('no "engines": { "node": ... } field');
  if (!semver.validRange(ours)) return fail(`engines.node "${ours}" is not a semver range`);
  const problems = [];
  const notes = [];
  const redRange = (pkg['node-red'] && pkg['node-red'].version) || '*';
  const redMin = semver.minVersion(redRange);
  const lowest = NODE_RED_NODE.find((r) => redMin && r.redMajor === redMin.major) || NODE_RED_NODE[0];
  for (const r of NODE_RED_NODE) {
    if (r.redMajor < lowest.redMajor) continue;
    if (!semver.intersects(ours, r.node)) problems.push(`engines.node "${ours}" allows no Node version that Node-RED ${r.redMajor} runs on (${r.node})`);
  }
  // Every Node version we promise must be one each runtime dependency supports.
  for (const name of Object.keys(pkg.dependencies || {})) {
    const file = path.join(root, 'node_modules', name, 'package.json');
    if (!fs.existsSync(file)) {
      problems.push(`${name} is not installed (run npm install) so its engines cannot be checked`);
      continue;
    }
    const dep = JSON.parse(fs.readFileSync(file, 'utf8'));
    const need = dep.engines && dep.engines.node;
    if (need && semver.validRange(need) && !semver.subset(ours, need)) {
      const why = ENGINES_VERIFIED_BY_TESTS[name];
      if (why) notes.push(`${name}@${dep.version} ${why}`);
      else problems.push(`${name}@${dep.version} declares engines.node "${need}" but this package declares "${ours}"`);
    }
  }
  return problems.length ? fail(problems.join('; ')) : pass(notes.length ? `${ours} (note: ${notes.join('; ')})` : ours);
});

check('examples', 'every non-config node is used in an example flow', () => {
  const html = fs.readFileSync(path.join(root, 'nodes', 'lwm2m.html'), 'utf8');
  const types = [];
  const re = /RED\.nodes\.registerType\(\s*["']([^"']+)["']\s*,\s*\{([\s\S]*?)\n\s{4}\}\);/g;
  let m;
  while ((m = re.exec(html))) {
    if (!/category:\s*["']config["']/.test(m[2])) types.push(m[1]);
  }
  if (types.length === 0) return fail('no node types found in nodes/lwm2m.html');
  const dir = path.join(root, 'examples');
  const used = new Set();
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (!f.endsWith('.json')) continue;
    for (const n of JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))) used.add(n.type);
  }
  const missing = types.filter((t) => !used.has(t));
  return missing.length ? fail(`not in any example: ${missing.join(', ')}`) : pass(types.join(', '));
});

check('dependencies', `at most ${MAX_DEPENDENCIES} runtime dependencies`, () => {
  const deps = Object.keys(pkg.dependencies || {});
  return deps.length <= MAX_DEPENDENCIES ? pass(`${deps.length}: ${deps.join(', ')}`) : fail(`${deps.length} dependencies: ${deps.join(', ')}`);
});

check('outdated', 'no runtime dependency is outdated', () => {
  const deps = pkg.dependencies || {};
  if (argv.includes('--offline')) return { ok: true, skipped: true, detail: '--offline' };
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['outdated', '--json', ...Object.keys(deps)], { cwd: root, encoding: 'utf8', timeout: 60000 });
  let report;
  try {
    report = JSON.parse(r.stdout || '{}');
  } catch {
    return { ok: true, skipped: true, detail: `npm outdated gave no JSON (${(r.stderr || '').split('\n')[0]})` };
  }
  if (report.error) return { ok: true, skipped: true, detail: `registry not reachable: ${report.error.summary || report.error.code}` };
  const outdated = [];
  for (const [name, info] of Object.entries(report)) {
    if (!(name in deps) || !info || !info.latest) continue;
    const range = deps[name];
    const floor = semver.validRange(range) ? semver.minVersion(range) : null;
    // Outdated: the latest release is newer than what the declared range starts at and the range does not allow it.
    if (floor && semver.valid(info.latest) && semver.gt(info.latest, floor) && !semver.satisfies(info.latest, range)) {
      outdated.push(`${name} ${range} (latest ${info.latest})`);
    }
  }
  return outdated.length ? fail(outdated.join(', ')) : pass('');
});

const failed = results.filter((r) => !r.ok);
if (argv.includes('--json')) {
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
} else {
  for (const r of results) {
    const mark = r.skipped ? 'SKIP' : r.ok ? 'ok  ' : 'FAIL';
    console.log(`${mark} ${r.id.padEnd(17)} ${r.rule}${r.detail ? ` — ${r.detail}` : ''}`);
  }
  console.log(failed.length ? `\n${failed.length} scorecard rule(s) fail.` : '\nAll scorecard rules pass.');
}
process.exitCode = failed.length ? 1 : 0;
