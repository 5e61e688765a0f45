/**
 * The package as users get it: `npm pack`, installed from the tarball into a fresh Node-RED user dir, loaded by
 * Node-RED 4.1 (the dev dependency, on this Node) and by Node-RED 5 on Node 22 (the npm `node` package supplies
 * the binary; both are installed once into a cache directory under the system temp dir).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, PKG, errorLines, startNodeRed, tempDir, writeSettings } from './support/browser-red';
import { freeTcpPort } from './support/ports';

const NODE22_VERSION = '22.23.3';
const NODE_RED5_VERSION = '5.0.7';
const TYPES = ['lwm2m-server', 'lwm2m-request', 'lwm2m-events', 'lwm2m-stats'];
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function npm(args: string[], cwd: string, timeout = 240000): string {
  return execFileSync(NPM, args, { cwd, encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
}

/** Installs the packed tarball into a new user dir, as the palette manager does (`npm install <module>`). */
function installInto(tarball: string): string {
  const userDir = tempDir('lwm2m-install-');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', description: 'A Node-RED Project', version: '0.0.1', private: true }));
  npm(['install', '--no-audit', '--no-fund', '--omit=dev', '--prefer-offline', tarball], userDir);
  return userDir;
}

interface NodeSet { id: string; module: string; types: string[]; enabled: boolean; loaded?: boolean; err?: string }

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

/** Loads the user dir in Node-RED and checks the nodes, the examples and the log. */
async function checkLoads(userDir: string, opts: { nodeBin?: string; redJs?: string; version: RegExp }): Promise<void> {
  const uiPort = await freeTcpPort();
  writeSettings(userDir, { uiPort });
  const red = await startNodeRed({ userDir, uiPort, nodeBin: opts.nodeBin, redJs: opts.redJs, timeoutMs: 45000 });
  try {
    const settings = await getJson<{ version: string }>(`${red.url}/settings`);
    assert.match(settings.version, opts.version);

    const sets = await getJson<NodeSet[]>(`${red.url}/nodes`);
    const ours = sets.filter((s) => s.module === PKG.name);
    assert.equal(ours.length, 1, `node sets of ${PKG.name}: ${JSON.stringify(ours)}`);
    assert.equal(ours[0].err, undefined, ours[0].err);
    assert.equal(ours[0].enabled, true);
    assert.equal(ours[0].loaded ?? true, true, JSON.stringify(ours[0]));
    assert.deepEqual([...ours[0].types].sort(), [...TYPES].sort());

    // Import › Examples lists the modules with examples, then their flows, read through the library API.
    const modules = await getJson<string[]>(`${red.url}/library/examples/flows/`);
    assert.ok(modules.includes(PKG.name), `examples modules: ${JSON.stringify(modules)}`);
    const entries = await getJson<Array<{ fn?: string } | string>>(`${red.url}/library/examples/flows/${PKG.name}`);
    const names = entries.map((e) => (typeof e === 'string' ? e : e.fn)).sort();
    const expected = fs.readdirSync(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, '')).sort();
    assert.deepEqual(names, expected);
    const demo = await getJson<Array<{ type: string }>>(`${red.url}/library/examples/flows/${PKG.name}/lwm2m-demo`);
    assert.ok(demo.some((n) => n.type === 'lwm2m-request'));

    // The editor HTML and the message catalog of our node set are served.
    const html = await (await fetch(`${red.url}/nodes`, { headers: { accept: 'text/html' } })).text();
    assert.match(html, /data-template-name="lwm2m-request"/);
    assert.match(html, /RED\.sidebar\.addTab/);
    const catalog = await getJson<Record<string, unknown>>(`${red.url}/nodes/messages?lng=en-US`);
    assert.ok(catalog[`${PKG.name}/lwm2m`], `message catalog keys: ${Object.keys(catalog).join(', ')}`);
  } finally {
    await red.stop();
  }
  const problems = errorLines(red.log());
  assert.deepEqual(problems, [], red.log());
}

/** Node 22 (this one when it is 22+, else the npm `node` package) and Node-RED 5, installed once into a cache dir. */
function nodeRed5(): { nodeBin: string; redJs: string } {
  const cache = path.join(os.tmpdir(), `lwm2m-flow-test-node${NODE22_VERSION}-node-red${NODE_RED5_VERSION}`);
  const nodeBin = Number(process.versions.node.split('.')[0]) >= 22 ? process.execPath : path.join(cache, 'node_modules', '.bin', 'node');
  const redJs = path.join(cache, 'node_modules', 'node-red', 'red.js');
  if (!fs.existsSync(redJs) || !fs.existsSync(nodeBin)) {
    fs.mkdirSync(cache, { recursive: true });
    fs.writeFileSync(path.join(cache, 'package.json'), JSON.stringify({ name: 'node22-node-red5', private: true }));
    const pkgs = [`node-red@${NODE_RED5_VERSION}`];
    if (nodeBin !== process.execPath) pkgs.push(`node@${NODE22_VERSION}`);
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', ...pkgs], cache);
  }
  const version = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
  if (!version.startsWith('v22.') && Number(version.slice(1).split('.')[0]) < 22) throw new Error(`${nodeBin} is ${version}, not Node 22+`);
  return { nodeBin, redJs };
}

describe('install from the npm pack tarball', function () {
  this.timeout(300000);
  let packDir = '';
  let tarball = '';
  const userDirs: string[] = [];

  before(function () {
    assert.ok(fs.existsSync(path.join(ROOT, 'nodes', 'lwm2m.js')), 'nodes/lwm2m.js is missing: build first (npm test does)');
    packDir = tempDir('lwm2m-pack-');
    const out = npm(['pack', '--json', '--pack-destination', packDir], ROOT);
    const info = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(packDir, info[0].filename);
    const files = info[0].files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'nodes/lwm2m.js', 'nodes/lwm2m.html', 'nodes/locales/en-US/lwm2m.json', 'nodes/locales/en-US/lwm2m.html', 'nodes/icons/lwm2m.svg', 'dist/index.js', 'examples/lwm2m-demo.json']) {
      assert.ok(files.includes(f), `${f} is not in the tarball`);
    }
    assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('test/')), 'sources or tests in the tarball');
  });

  after(() => {
    for (const d of [packDir, ...userDirs]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it(`loads in Node-RED 4.1 on Node ${process.versions.node} with no errors; the examples are under Import › Examples`, async function () {
    const userDir = installInto(tarball);
    userDirs.push(userDir);
    await checkLoads(userDir, { version: /^4\.1\./ });
  });

  it(`loads in Node-RED ${NODE_RED5_VERSION} on Node 22 with no errors`, async function () {
    let runtime: { nodeBin: string; redJs: string };
    try {
      runtime = nodeRed5();
    } catch (err) {
      // Only a runtime that cannot be obtained (offline machine) skips; a load failure fails.
      console.log(`      skipped: Node 22 / Node-RED ${NODE_RED5_VERSION} cannot be installed here: ${(err as Error).message.split('\n')[0]}`);
      this.skip();
      return;
    }
    const userDir = installInto(tarball);
    userDirs.push(userDir);
    await checkLoads(userDir, { ...runtime, version: /^5\./ });
  });
});
