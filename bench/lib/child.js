'use strict';
/** Spawns a benchmark child process and calls commands on it over IPC (one promise per command). */
const { fork } = require('node:child_process');

/** `execPath`: what runs the script instead of this Node (e.g. a wrapper that puts valgrind in front of it). */
function spawnChild(script, { execArgv = [], env = {}, name = script, execPath = process.execPath } = {}) {
  const proc = fork(script, [], { execPath, execArgv, env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let seq = 0;
  const waiting = new Map();
  let exited = false;
  const exitPromise = new Promise((resolve) => proc.once('exit', (code, signal) => {
    exited = true;
    for (const { reject } of waiting.values()) reject(new Error(`${name} exited (${code ?? signal}) during a command`));
    waiting.clear();
    resolve(code);
  }));
  proc.on('message', (m) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.error) w.reject(new Error(`${name}: ${m.error}`));
    else w.resolve(m.result);
  });
  return {
    proc,
    pid: proc.pid,
    call(cmd, args = {}, timeoutMs = 600_000) {
      if (exited) return Promise.reject(new Error(`${name} is not running`));
      const id = ++seq;
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`${name}: ${cmd} took longer than ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (v) => { clearTimeout(t); resolve(v); },
          reject: (e) => { clearTimeout(t); reject(e); },
        });
        proc.send({ id, cmd, ...args });
      });
    },
    /** Asks the child to exit, and kills this child (by its own pid) if it has not exited after graceMs. */
    async exit(graceMs = 10_000) {
      if (exited) return;
      this.call('exit', {}, graceMs).catch(() => undefined);
      const t = setTimeout(() => { if (!exited) proc.kill('SIGKILL'); }, graceMs);
      await exitPromise;
      clearTimeout(t);
    },
    exited: () => exited,
  };
}

/**
 * The child side: answers each IPC command with `handle(msg)`'s result (or its error text) under the command's id,
 * and calls `onDisconnect` (default: exit) when the parent goes away.
 */
function serveCommands(handle, { errorText = (err) => err.message, onDisconnect = () => process.exit(0) } = {}) {
  process.on('message', (msg) => {
    handle(msg).then(
      (result) => process.send({ id: msg.id, result }),
      (err) => process.send({ id: msg.id, error: errorText(err) }),
    );
  });
  process.on('disconnect', onDisconnect);
}

module.exports = { spawnChild, serveCommands };
