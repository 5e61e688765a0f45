/**
 * The editor in real Chromium, as a user works: import the demo example from Import › Examples, set the server's
 * ports and the device's PSK in the server dialog, deploy, start a simulated device, and see its data in the
 * Debug sidebar and the device in the LwM2M sidebar (where one resource is read). A screenshot is saved in
 * test-artifacts/.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { freeTcpPort, freeUdpPort } from './support/ports';
import { ROOT, PKG, errorLines, linkPackage, startNodeRed, tempDir, writeSettings, type RedProcess } from './support/browser-red';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const DEMO = { endpoint: 'demo-device', identity: 'demo-device-id', keyText: 'demo-secret-key!' };

interface SimDevice { start(): Promise<void>; stop(): Promise<void>; set(path: string, v: unknown): void }

describe('editor in Chromium', function () {
  this.timeout(90000);
  let red: RedProcess | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let device: SimDevice | undefined;
  let userDir = '';
  const pageErrors: string[] = [];

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      console.log(`      skipped: no Chromium at ${CHROMIUM} (scripts/test.sh installs Debian's chromium)`);
      this.skip();
    }
    assert.ok(fs.existsSync(path.join(ROOT, 'dist', 'index.js')), 'dist/index.js is missing: build first (npm test does)');
    userDir = tempDir('lwm2m-browser-');
    linkPackage(userDir);
    fs.writeFileSync(path.join(userDir, 'flows.json'), '[]');
    const uiPort = await freeTcpPort();
    writeSettings(userDir, { uiPort });
    red = await startNodeRed({ userDir, uiPort });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  after(async () => {
    await device?.stop().catch(() => undefined);
    await browser?.close();
    await red?.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  async function shot(name: string): Promise<void> {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page?.screenshot({ path: path.join(ARTIFACTS, name) });
  }

  it('import the example, set the PSK in the server dialog, deploy, see the device in Debug and in the LwM2M sidebar', async () => {
    const p = page as Page;
    const r = red as RedProcess;
    try {
      await p.goto(r.url);
      await p.waitForSelector('.red-ui-palette-node[data-palette-type="lwm2m-request"]', { timeout: 20000 });

      // Import › Examples › our module › lwm2m-demo
      await p.evaluate(() => (window as unknown as { RED: { actions: { invoke(a: string): void } } }).RED.actions.invoke('core:show-examples-import-dialog'));
      const dialog = p.locator('.red-ui-editor-dialog:visible, #red-ui-clipboard-dialog:visible').first();
      await dialog.locator('.red-ui-treeList-label', { hasText: PKG.name }).first().click();
      await dialog.locator('.red-ui-treeList-label', { hasText: 'lwm2m-demo' }).first().click();
      await p.locator('#red-ui-clipboard-dialog-ok').click();
      // The imported flow opens in its own tab; clicking the workspace places anything still attached to the mouse.
      await p.waitForFunction(() => {
        const RED = (window as unknown as { RED: { nodes: { node(id: string): unknown } } }).RED;
        return !!RED.nodes.node('6c776d326d000001');
      });
      await p.mouse.click(700, 500);

      // The server dialog: free ports on 127.0.0.1, and the device's PSK typed as text in the Security tab.
      const [coapPort, coapsPort] = [await freeUdpPort(), await freeUdpPort()];
      await p.evaluate(() => {
        const RED = (window as unknown as { RED: { editor: { editConfig(n: string, t: string, id: string): void } } }).RED;
        RED.editor.editConfig('', 'lwm2m-server', '6c776d326d000001');
      });
      await p.waitForSelector('#node-config-input-coapsPort', { state: 'visible' });
      await p.fill('#node-config-input-bind', '127.0.0.1');
      await p.fill('#node-config-input-coapPort', String(coapPort));
      await p.fill('#node-config-input-coapsPort', String(coapsPort));
      await p.locator('#node-config-lwm2m-server-tabs a', { hasText: 'Security' }).click();
      await p.locator('#lwm2m-server-tab-security .red-ui-editableList-addButton', { hasText: 'add' }).first().click();
      const row = p.locator('#node-config-lwm2m-psk-list .lwm2m-psk-row').last();
      await row.locator('input.lwm2m-psk-endpoint').fill(DEMO.endpoint);
      await row.locator('input.lwm2m-psk-identity').fill(DEMO.identity);
      await row.locator('.lwm2m-psk-keycell select').selectOption('text');
      await row.locator('input.lwm2m-psk-key').fill(DEMO.keyText);
      await p.waitForFunction(() => document.querySelector('#lwm2m-server-tab-security .lwm2m-psk-count')?.textContent?.includes('1'));
      assert.equal(await p.locator('#lwm2m-server-tab-security .lwm2m-psk-problems li').count(), 0, 'PSK table problems');
      await shot('browser-server-dialog.png');
      await p.locator('#node-config-dialog-ok').click();
      await p.waitForSelector('#node-config-input-coapsPort', { state: 'detached' });

      // Deploy
      await p.locator('#red-ui-header-button-deploy').click();
      await p.waitForSelector('.red-ui-notification:has-text("Successfully deployed")', { timeout: 15000 });
      const creds = JSON.parse(fs.readFileSync(path.join(userDir, 'flows_cred.json'), 'utf8')) as Record<string, { psk?: string }>;
      assert.deepEqual(JSON.parse(creds['6c776d326d000001'].psk ?? '[]'), [{ endpoint: DEMO.endpoint, identity: DEMO.identity, key: Buffer.from(DEMO.keyText).toString('hex') }]);
      const flows = fs.readFileSync(path.join(userDir, 'flows.json'), 'utf8');
      assert.ok(!flows.includes(Buffer.from(DEMO.keyText).toString('hex')) && !flows.includes(DEMO.keyText), 'the key is in flows.json');

      // A simulated device with the demo PSK registers.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { SimulatedDevice } = require(path.join(ROOT, 'dist', 'index.js')) as { SimulatedDevice: new (o: object) => SimDevice };
      device = new SimulatedDevice({ endpoint: DEMO.endpoint, host: '127.0.0.1', port: coapsPort, psk: { identity: DEMO.identity, key: Buffer.from(DEMO.keyText) }, lwm2mVersion: '1.1' });
      await device.start();

      // Debug sidebar: the register event and the Device object read on registration.
      await p.evaluate(() => (window as unknown as { RED: { sidebar: { show(id: string): void } } }).RED.sidebar.show('debug'));
      await p.waitForSelector('.red-ui-debug-msg:has-text("Open Mobile Alliance")', { timeout: 15000 });
      await p.waitForSelector('.red-ui-debug-msg:has-text("register")');
      await p.evaluate(() => (window as unknown as { RED: { workspaces: { show(id: string): void } } }).RED.workspaces.show('6c776d326d00d000'));
      await p.waitForSelector('.red-ui-debug-msg:has-text("5700")', { timeout: 10000 }); // the temperature read every 5 s
      await shot('browser-debug-sidebar.png');

      // LwM2M sidebar: the device, its objects with names, and a read of the temperature.
      await p.evaluate(() => (window as unknown as { RED: { sidebar: { show(id: string): void } } }).RED.sidebar.show('lwm2m'));
      const dev = p.locator(`.lwm2m-sb-device[data-endpoint="${DEMO.endpoint}"]`);
      await dev.waitFor({ timeout: 10000 });
      const text = await dev.innerText();
      assert.match(text, /DTLS as demo-device-id/);
      assert.match(text, /LwM2M 1\.1/);
      assert.match(text, /1 handshake/);
      await dev.click();
      const inst = p.locator('.lwm2m-sb-instance[data-path="/3303/0"]');
      await inst.waitFor();
      assert.match(await inst.innerText(), /Temperature/);
      await inst.locator('.lwm2m-sb-resource').first().click();
      const sensor = p.locator('.lwm2m-sb-resource[data-path="/3303/0/5700"]');
      await sensor.waitFor();
      assert.match(await sensor.innerText(), /Sensor Value/);
      await sensor.locator('button.lwm2m-sb-read').click();
      await p.waitForSelector('.lwm2m-sb-result[data-path="/3303/0/5700"]:has-text("21.5")', { timeout: 10000 });
      await shot('browser-lwm2m-sidebar.png');
      await p.fill('#lwm2m-sb-filter', 'no-such-device');
      await p.waitForSelector('.lwm2m-sb-device', { state: 'detached' });
      await p.fill('#lwm2m-sb-filter', 'DEMO');
      await dev.waitFor();

      // Request dialog: the path field suggests resources with their names.
      await p.evaluate(() => {
        const RED = (window as unknown as { RED: { editor: { edit(n: unknown): void }; nodes: { node(id: string): unknown } } }).RED;
        RED.editor.edit(RED.nodes.node('6c776d326d00d022'));
      });
      await p.waitForSelector('#node-input-path', { state: 'visible' });
      await p.waitForTimeout(500); // the edit tray slides open
      await p.locator('#node-input-path').click();
      await p.locator('#node-input-path').pressSequentially('/3303/0/57', { delay: 40 });
      assert.equal(await p.locator('#node-input-path').inputValue(), '/3303/0/57');
      await p.waitForSelector('.red-ui-autoComplete-container:has-text("Sensor Value")', { timeout: 5000 });
      await p.keyboard.press('Escape');
      await p.locator('#node-input-endpoint').click();
      await p.locator('#node-input-endpoint').pressSequentially('demo', { delay: 40 });
      await p.waitForSelector(`.red-ui-autoComplete-container:has-text("${DEMO.endpoint}")`, { timeout: 5000 });
      await p.waitForTimeout(300); // the menu slides open
      await shot('browser-request-dialog.png');
      await p.locator('#node-dialog-cancel').click();

      assert.deepEqual(pageErrors, [], 'errors in the page');
      assert.deepEqual(errorLines(r.log()), [], r.log());
    } catch (err) {
      await shot('browser-failure.png').catch(() => undefined);
      (err as Error).message += `\n--- Node-RED log (last 40 lines) ---\n${r.log().split('\n').slice(-40).join('\n')}`;
      throw err;
    }
  });
});
