/**
 * Runs a real Node-RED process (as `node-red` does from the command line) with its own user dir and editor port,
 * for the admin, install and browser tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { freeTcpPort } from './ports';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string; version: string; dependencies?: Record<string, string>; devDependencies?: Record<string, string>;
  engines?: { node?: string }; 'node-red'?: { version?: string; nodes?: Record<string, string> };
};

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Makes the package visible to Node-RED in `userDir` by a link to the working tree (what `npm start` does). */
export function linkPackage(userDir: string): void {
  const link = path.join(userDir, 'node_modules', ...PKG.name.split('/'));
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(ROOT, link, 'dir');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'lwm2m-test-userdir', private: true, dependencies: { [PKG.name]: '*' } }));
}

export interface SettingsOptions {
  uiPort: number;
  /** Extra settings as JavaScript source, e.g. an adminAuth block, inserted in module.exports. */
  extra?: string;
  logLevel?: string;
}

export function writeSettings(userDir: string, opts: SettingsOptions): string {
  const file = path.join(userDir, 'settings.js');
  fs.writeFileSync(
    file,
    `module.exports = {
  uiPort: ${opts.uiPort},
  uiHost: '127.0.0.1',
  flowFile: 'flows.json',
  credentialSecret: false,
  logging: { console: { level: '${opts.logLevel ?? 'info'}', metrics: false, audit: false } },
  editorTheme: { tours: false, projects: { enabled: false } },
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
  ${opts.extra ?? ''}
};
`,
  );
  return file;
}

export interface RedProcess {
  child: ChildProcess;
  url: string;
  log: () => string;
  stop: () => Promise<void>;
}

export interface StartOptions {
  /** The node binary (default: this process's). */
  nodeBin?: string;
  /** Path of node-red's red.js (default: the dev dependency). */
  redJs?: string;
  userDir: string;
  uiPort: number;
  /** Resolve once this appears in the log (default: "Started flows"). */
  readyPattern?: RegExp;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export async function startNodeRed(opts: StartOptions): Promise<RedProcess> {
  const redJs = opts.redJs ?? require.resolve('node-red/red.js');
  const child = spawn(opts.nodeBin ?? process.execPath, [redJs, '--userDir', opts.userDir, '--settings', path.join(opts.userDir, 'settings.js')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false', ...opts.env },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  // red.js starts the runtime (which logs "Started flows") before its HTTP server listens ("Server now running at"):
  // ready means both.
  const patterns = opts.readyPattern ? [opts.readyPattern] : [/Started flows/, /Server now running at/];
  const until = Date.now() + (opts.timeoutMs ?? 30000);
  while (!patterns.every((p) => p.test(out))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`Node-RED exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${out}`);
    if (Date.now() > until) {
      await stop();
      throw new Error(`Node-RED not ready after ${opts.timeoutMs ?? 30000} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url: `http://127.0.0.1:${opts.uiPort}`, log: () => out, stop };
}

/** Lines of a Node-RED log that report an error or a failed node type. */
export function errorLines(log: string): string[] {
  return log.split('\n').filter((l) => /\[error\]|\[warn\].*(lwm2m|Failed to register|Error loading)|Waiting for missing types/i.test(l));
}
