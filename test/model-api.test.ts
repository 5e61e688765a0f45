/** Object model API: loading a DDF folder, describing and naming paths, checking writes before they are sent. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContentFormat, decodeContent } from '../src/lwm2m/content';
import { Lwm2mModelError, ObjectModel } from '../src/lwm2m/model';
import { Lwm2mPathError, parsePath } from '../src/lwm2m/path';

const FOLDER = path.join(__dirname, 'fixtures', 'ddf-folder');

const modelError = (re: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof Lwm2mModelError, `expected Lwm2mModelError, got ${String(e)}`);
  assert.match((e as Error).message, re);
  return true;
};

describe('object model: loadDirectory', () => {
  it('loads the good DDF, reports the broken one, ignores other files', () => {
    const model = new ObjectModel();
    const { loaded, errors } = model.loadDirectory(FOLDER);
    assert.deepEqual(loaded.map((d) => d.id), [40010]);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.file, '40011-broken.xml');
    assert.match(errors[0]?.error ?? '', /not a DDF document/);
    assert.equal(model.get(40010)?.name, 'Irrigation Valve');
    assert.equal(model.get(40010)?.version, '1.1');
    assert.equal(model.has(40011), false);
    assert.equal(model.has(3), true, 'the core set stays');
  });

  it('types decoding by the loaded definitions', () => {
    const model = new ObjectModel([]);
    model.loadDirectory(FOLDER);
    const out = decodeContent(ContentFormat.TEXT, Buffer.from('1'), parsePath('/40010/0/0'), model);
    assert.deepEqual(out, { '/40010/0/0': true });
  });

  it('adds nothing from a file with one bad Object among good ones', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-ddf-'));
    try {
      const good = fs.readFileSync(path.join(FOLDER, '40010.xml'), 'utf8');
      // Two Objects in one document, the second with an invalid Operations value.
      const second = good.replace(/<ObjectID>40010</, '<ObjectID>40012<').replace('<Operations>RW</Operations>', '<Operations>RX</Operations>');
      const object = (xml: string): string => (/<Object [\s\S]*<\/Object>/.exec(xml) as RegExpExecArray)[0];
      fs.writeFileSync(path.join(dir, 'two.xml'), `<LWM2M>${object(good).replace('40010', '40013')}${object(second)}</LWM2M>`);
      fs.mkdirSync(path.join(dir, 'sub.xml'));
      const model = new ObjectModel([]);
      const { loaded, errors } = model.loadDirectory(dir);
      assert.deepEqual(loaded, []);
      assert.deepEqual(errors.map((e) => e.file), ['two.xml']);
      assert.match(errors[0]?.error ?? '', /Object 40012 resource 0: Operations must be/);
      assert.deepEqual(model.ids(), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a missing folder instead of throwing', () => {
    const model = new ObjectModel([]);
    const missing = path.join(os.tmpdir(), 'lwm2m-no-such-folder-' + process.pid);
    const { loaded, errors } = model.loadDirectory(missing);
    assert.deepEqual(loaded, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]?.error ?? '', /cannot read the folder/);
  });
});

describe('object model: describe and names', () => {
  const model = new ObjectModel();

  it('describes a Resource with name, type, units and operations', () => {
    assert.deepEqual(model.describe('/3/0/9'), {
      path: '/3/0/9',
      known: true,
      objectId: 3,
      objectName: 'Device',
      objectVersion: '1.2',
      objectMultiple: false,
      instanceId: 0,
      resourceId: 9,
      resourceName: 'Battery Level',
      type: 'Integer',
      units: '/100',
      operations: 'R',
      resourceMultiple: false,
      mandatory: false,
    });
    const ri = model.describe(parsePath('/3/0/6/1'));
    assert.equal(ri.resourceName, 'Available Power Sources');
    assert.equal(ri.resourceInstanceId, 1);
    assert.equal(ri.resourceMultiple, true);
  });

  it('describes Objects, Instances and unknown paths', () => {
    assert.deepEqual(model.describe('/3303/1'), {
      path: '/3303/1',
      known: true,
      objectId: 3303,
      objectName: 'Temperature',
      objectVersion: '1.1',
      objectMultiple: true,
      instanceId: 1,
    });
    assert.deepEqual(model.describe('/3/0/999'), {
      path: '/3/0/999',
      known: false,
      objectId: 3,
      objectName: 'Device',
      objectVersion: '1.2',
      objectMultiple: false,
      instanceId: 0,
      resourceId: 999,
    });
    assert.deepEqual(model.describe('/31024/0/1'), { path: '/31024/0/1', known: false, objectId: 31024, instanceId: 0, resourceId: 1 });
    assert.deepEqual(model.describe('/'), { path: '/', known: false });
    assert.throws(() => model.describe('/3/x'), Lwm2mPathError);
  });

  it('names the keys of a read result', () => {
    const values = { '/3/0/0': 'Open Mobile Alliance', '/3/0/6/1': 5, '/3/0': 'x', '/31024/0/1': 1, '/3/0/999': 1, 'not a path': 1 };
    assert.deepEqual(model.namesFor(values), {
      '/3/0/0': 'Manufacturer',
      '/3/0/6/1': 'Available Power Sources',
      '/3/0': 'Device',
    });
    assert.deepEqual(model.namesFor({}), {});
  });
});

describe('object model: checkWritable', () => {
  const model = new ObjectModel();
  model.loadDirectory(FOLDER);

  it('accepts values that fit writable Resources', () => {
    model.checkWritable('/1/0/1', 600);
    model.checkWritable('/1/0/1', '600');
    model.checkWritable('/1/0/1', 9223372036854775807n);
    model.checkWritable('/3/0/13', new Date());
    model.checkWritable('/3/0/14', '+02:00');
    model.checkWritable('/40010/0/0', true);
    model.checkWritable('/40010/0/2', 18446744073709551615n);
    model.checkWritable('/40010/0/4', [new Date(), 1700000000]);
    model.checkWritable('/40010/0/4/3', 1700000000);
    model.checkWritable('/40010/0/4', {});
    model.checkWritable('/40010/0', { '0': false, '2': 60 });
    model.checkWritable('/', { '/1/0/1': 600, '/40010/0/0': true });
    model.checkWritable('/31024/0/1', 'anything: the Object is not in the model');
    model.checkWritable('/40010', { '/40010/7/1': 2.5 }, { operation: 'create' });
  });

  it('refuses read-only, executable and bootstrap-only Resources, naming them', () => {
    assert.throws(() => model.checkWritable('/3/0/0', 'ACME'), modelError(/^\/3\/0\/0 \(Device \/ Manufacturer\) is read-only$/));
    assert.throws(() => model.checkWritable('/3/0/4', ''), modelError(/\/3\/0\/4 \(Device \/ Reboot\) is executable, not writable: use execute/));
    assert.throws(() => model.checkWritable('/0/0/0', 'coaps://x'), modelError(/only through bootstrap/));
    assert.throws(() => model.checkWritable('/40010/0', { '0': true, '1': 2.5 }), modelError(/\/40010\/0\/1 \(Irrigation Valve \/ Flow Rate\) is read-only/));
    assert.throws(() => model.checkWritable('/', { '/1/0/1': 600, '/3/0/9': 5 }), modelError(/\/3\/0\/9 .* is read-only/));
  });

  it('refuses values that do not fit the type', () => {
    assert.throws(() => model.checkWritable('/1/0/1', 'abc'), modelError(/\/1\/0\/1 \(LwM2M Server \/ Lifetime\), type Integer: "abc" does not fit Integer/));
    assert.throws(() => model.checkWritable('/1/0/1', 1.5), modelError(/does not fit Integer/));
    assert.throws(() => model.checkWritable('/40010/0/2', -1), modelError(/-1 is out of range for Unsigned Integer/));
    assert.throws(() => model.checkWritable('/40010/0/2', 18446744073709551616n), modelError(/out of range for Unsigned Integer/));
    assert.throws(() => model.checkWritable('/40010/0/0', 'yes'), modelError(/"yes" does not fit Boolean/));
    assert.throws(() => model.checkWritable('/40010/0/0', 2), modelError(/2 does not fit Boolean/));
    assert.throws(() => model.checkWritable('/3/0/13', 'soon'), modelError(/does not fit Time/));
    assert.throws(() => model.checkWritable('/1/0/6', { a: 1 }), modelError(/is neither a full path/));
  });

  it('refuses Resources that do not exist in a known Object, and wrong multiplicity', () => {
    assert.throws(() => model.checkWritable('/3/0/999', 1), modelError(/\/3\/0\/999: Object 3 \(Device\) has no Resource 999/));
    assert.throws(() => model.checkWritable('/40010/0/4', 1700000000), modelError(/multiple-instance/));
    assert.throws(() => model.checkWritable('/40010/0/0', [true]), modelError(/single-instance/));
    assert.throws(() => model.checkWritable('/40010/0/2/0', 1), modelError(/single-instance/));
  });

  it('checks types but not read-only for a Create', () => {
    model.checkWritable('/40010', { '/40010/1/1': 2.5 }, { operation: 'create' });
    assert.throws(() => model.checkWritable('/40010', { '/40010/1/1': 'fast' }, { operation: 'create' }), modelError(/does not fit Float/));
    assert.throws(() => model.checkWritable('/40010', { '/40010/1/3': 1 }, { operation: 'create' }), modelError(/executable/));
  });

  it('refuses a bad path or an empty write', () => {
    assert.throws(() => model.checkWritable('/3/x', 1), modelError(/not a decimal integer/));
    assert.throws(() => model.checkWritable('/1/0', {}), modelError(/no value given/));
  });
});
