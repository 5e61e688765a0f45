/** The Flow Library scorecard rules (scripts/check-scorecard.js), one test per rule. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, tempDir } from './support/browser-red';

interface RuleResult { id: string; rule: string; ok: boolean; detail: string; skipped?: boolean }

const SCRIPT = path.join(ROOT, 'scripts', 'check-scorecard.js');
const RULES = ['license', 'repository', 'scoped-name', 'keyword', 'node-red-version', 'engines-node', 'examples', 'dependencies', 'outdated'];

function run(args: string[]): { code: number | null; results: RuleResult[] } {
  const r = spawnSync(process.execPath, [SCRIPT, '--json', ...args], { encoding: 'utf8', timeout: 90000 });
  return { code: r.status, results: JSON.parse(r.stdout) as RuleResult[] };
}

describe('Flow Library scorecard', function () {
  this.timeout(90000);
  let report: { code: number | null; results: RuleResult[] };

  before(() => {
    report = run([]);
  });

  it('checks every rule, and exits non-zero exactly when one fails', () => {
    assert.deepEqual(report.results.map((r) => r.id), RULES);
    assert.equal(report.code, report.results.some((r) => !r.ok) ? 1 : 0);
  });

  for (const id of RULES) {
    it(`rule ${id}`, function () {
      const r = report.results.find((x) => x.id === id) as RuleResult;
      if (r.skipped) {
        console.log(`      skipped: ${r.detail}`);
        this.skip();
      }
      assert.ok(r.ok, `${r.rule}: ${r.detail}`);
    });
  }

  it('reports what is wrong with a package that breaks the rules', () => {
    const dir = tempDir('lwm2m-scorecard-');
    try {
      fs.mkdirSync(path.join(dir, 'nodes'));
      fs.mkdirSync(path.join(dir, 'examples'));
      fs.copyFileSync(path.join(ROOT, 'nodes', 'lwm2m.html'), path.join(dir, 'nodes', 'lwm2m.html'));
      fs.writeFileSync(path.join(dir, 'examples', 'only-events.json'), JSON.stringify([{ id: 'a', type: 'lwm2m-events' }]));
      const deps = Object.fromEntries(['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => [`dep-${n}`, '^1.0.0']));
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'node-red-contrib-x', keywords: ['iot'], engines: { node: '>=8 <10' }, 'node-red': { version: '<4' }, dependencies: deps }));
      const { code, results } = run(['--dir', dir, '--offline']);
      assert.equal(code, 1);
      const byId = Object.fromEntries(results.map((r) => [r.id, r]));
      for (const id of ['license', 'repository', 'scoped-name', 'keyword', 'node-red-version', 'engines-node', 'examples', 'dependencies']) {
        assert.equal(byId[id].ok, false, `${id} should fail: ${byId[id].detail}`);
      }
      assert.match(byId.examples.detail, /lwm2m-request, lwm2m-stats/);
      assert.doesNotMatch(byId.examples.detail, /lwm2m-server/);
      assert.match(byId.dependencies.detail, /^7 dependencies/);
      assert.match(byId['engines-node'].detail, /Node-RED 3/);
      assert.equal(byId.outdated.skipped, true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
