#!/usr/bin/env node
'use strict';
/*
 * `npm start`: Node-RED (from devDependencies) with a throw-away user dir, this package installed into it, the demo
 * flow deployed, the LwM2M server listening on 5683/5684, and a simulated DTLS device that registers and answers
 * reads. Open http://127.0.0.1:1880 and watch the Debug sidebar. Ctrl-C stops everything.
 */
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const userDir = path.join(root, '.demo-userdir');
const uiPort = Number(process.env.DEMO_UI_PORT || 1880);
const pkg = require(path.join(root, 'package.json'));
const { RECOMMENDED } = require(path.join(root, 'bench', 'lib', 'node-args'));

// The demo credentials (also in the README). Real deployments set their own in the server node's dialog.
const DEMO = { endpoint: 'demo-device', identity: 'demo-device-id', keyText: 'demo-secret-key!' };

function prepareUserDir() {
  fs.rmSync(userDir, { recursive: true, force: true });
  const link = path.join(userDir, 'node_modules', ...pkg.name.split('/'));
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(root, link, 'dir');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'lwm2m-demo', private: true, dependencies: { [pkg.name]: '*' } }, null, 2));
  const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'lwm2m-demo.json'), 'utf8'));
  const server = flow.find((n) => n.type === 'lwm2m-server');
  if (!server) throw new Error('examples/lwm2m-demo.json has no lwm2m-server node');
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(flow, null, 2));
  const psk = [{ endpoint: DEMO.endpoint, identity: DEMO.identity, key: Buffer.from(DEMO.keyText).toString('hex') }];
  fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify({ [server.id]: { psk: JSON.stringify(psk) } }, null, 2));
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    `module.exports = {
  uiPort: ${uiPort},
  uiHost: '127.0.0.1',
  flowFile: 'flows.json',
  credentialSecret: false,
  logging: { console: { level: process.env.DEMO_LOG_LEVEL || 'info', metrics: false, audit: false } },
  editorTheme: { tours: false, projects: { enabled: false } },
};
`,
  );
  return server;
}

async function main() {
  const serverNode = prepareUserDir();
  const coaps = Number(serverNode.coapsPort || 5684);
  // the Node options README "Tuning" recommends for a busy server (one list, shared with the bench)
  const red = spawn(process.execPath, [...RECOMMENDED, require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let device;
  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    if (device) await device.stop().catch(() => undefined);
    red.kill('SIGINT');
    setTimeout(() => process.exit(code), 2000).unref();
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  red.on('exit', (code) => {
    if (!stopping) {
      console.error(`Node-RED exited (${code})`);
      stop(code || 1);
    }
  });

  const started = new Promise((resolve) => {
    let buf = '';
    red.stdout.on('data', (d) => {
      process.stdout.write(d);
      buf += d;
      if (/Started flows/.test(buf)) resolve();
    });
  });
  await started;

  const { SimulatedDevice } = require(path.join(root, 'dist', 'index.js'));
  const makeDevice = () => {
    const d = new SimulatedDevice({
      endpoint: DEMO.endpoint,
      host: '127.0.0.1',
      port: coaps,
      psk: { identity: DEMO.identity, key: Buffer.from(DEMO.keyText) },
      lifetime: 120,
      lwm2mVersion: '1.1',
    });
    d.on('execute', (p) => console.log(`[demo device] executed ${p}`));
    d.on('write', (p) => console.log(`[demo device] written ${JSON.stringify(p)}`));
    return d;
  };
  for (let attempt = 1; ; attempt++) {
    device = makeDevice();
    try {
      await device.start();
      break;
    } catch (err) {
      await device.stop().catch(() => undefined);
      if (attempt >= 5) throw err;
      console.log(`[demo device] registration attempt ${attempt} failed (${err.message}); retrying`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  console.log(`[demo device] "${DEMO.endpoint}" registered over DTLS at ${device.location}`);
  console.log(`\nOpen http://127.0.0.1:${uiPort} — the Debug sidebar shows the device's data. Ctrl-C stops.\n`);

  // A temperature that drifts, and an Update before the lifetime runs out.
  let t = 21.5;
  const drift = setInterval(() => {
    t = Math.round((t + (Math.random() - 0.5)) * 10) / 10;
    device.set('/3303/0/5700', t);
  }, 2000);
  const update = setInterval(() => device.update().catch((e) => console.log(`[demo device] update failed: ${e.message}`)), 60000);
  process.on('exit', () => {
    clearInterval(drift);
    clearInterval(update);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
