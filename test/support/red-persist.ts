/**
 * Mocha hooks for the lwm2m-server node's persistence inside Node-RED (node-red-node-test-helper): each test gets
 * a fresh user dir and a credential secret, so the server node saves its state in `<userDir>/lwm2m-srv.state`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import helper from 'node-red-node-test-helper';

export interface PersistFixture {
  /** The current test's Node-RED user dir. */
  readonly userDir: string;
  /** The state file of the server node with id 'srv'. */
  file(): string;
}

/**
 * Registers before/after/beforeEach/afterEach hooks in the calling describe(). `cleanup` runs after each test
 * before the flows are unloaded (e.g. to stop a device); the user dir is removed last.
 */
export function usePersistFixture(secret: string, dirPrefix: string, cleanup: () => Promise<void> = async () => {}): PersistFixture {
  let userDir = '';
  before(() => helper.startServer());
  after(() => {
    // Later test files get the helper's default settings back.
    helper.settings({});
    return helper.stopServer();
  });
  beforeEach(() => {
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), dirPrefix));
    helper.settings({ userDir, credentialSecret: secret });
  });
  afterEach(async () => {
    await cleanup();
    await helper.unload();
    fs.rmSync(userDir, { recursive: true, force: true });
  });
  return {
    get userDir() {
      return userDir;
    },
    file: () => path.join(userDir, 'lwm2m-srv.state'),
  };
}
