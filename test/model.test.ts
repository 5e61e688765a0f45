import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContentFormat, decodeContent } from '../src/lwm2m/content';
import {
  Lwm2mModelError,
  ObjectDef,
  ObjectModel,
  coreObjectDefs,
  fromCompact,
  parseDdf,
  toCompact,
} from '../src/lwm2m/model';
import { XmlError, parseXml } from '../src/lwm2m/model/xml';
import { parsePath } from '../src/lwm2m/path';
import coreJson from '../src/lwm2m/model/core-objects.json';

const FIXTURE = path.join(__dirname, 'fixtures', '3443.xml');
const CORE_IDS = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 19, 21];

const modelError = (re: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof Lwm2mModelError, `expected Lwm2mModelError, got ${String(e)}`);
  assert.match((e as Error).message, re);
  return true;
};

function ddf(objectBody: string, items = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<LWM2M><Object ObjectType="MODefinition">${objectBody}<Resources>${items}</Resources></Object></LWM2M>`;
}
const HEAD = '<Name>X</Name><ObjectID>40001</ObjectID><MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>';
const item = (id: string, type: string, ops = 'R', multi = 'Single'): string =>
  `<Item ID="${id}"><Name>R${id}</Name><Operations>${ops}</Operations><MultipleInstances>${multi}</MultipleInstances>` +
  `<Mandatory>Optional</Mandatory><Type>${type}</Type><RangeEnumeration/><Units/></Item>`;

describe('object model: shipped core set', () => {
  const model = new ObjectModel();

  it('holds the OMA core Objects and the IPSO 33xx Objects, nothing else', () => {
    const ids = model.ids();
    for (const id of CORE_IDS) assert.ok(ids.includes(id), `Object ${id} missing`);
    assert.ok(ids.includes(3303) && ids.includes(3300) && ids.includes(3399));
    assert.ok(ids.every((id) => CORE_IDS.includes(id) || (id >= 3300 && id <= 3399)));
    assert.ok(ids.length > 100);
  });

  it('describes the Device Object as the DDF does', () => {
    const dev = model.get(3) as ObjectDef;
    assert.equal(dev.name, 'Device');
    assert.equal(dev.urn, 'urn:oma:lwm2m:oma:3:1.2');
    assert.equal(dev.version, '1.2');
    assert.equal(dev.multiple, false);
    assert.equal(dev.mandatory, true);
    assert.deepEqual(model.resource(3, 0), {
      id: 0,
      name: 'Manufacturer',
      operations: 'R',
      multiple: false,
      mandatory: false,
      type: 'String',
    });
    assert.equal(model.resource(3, 4)?.type, 'none');
    assert.equal(model.resource(3, 4)?.operations, 'E');
    assert.equal(model.resource(3, 6)?.multiple, true);
    assert.equal(model.resource(3, 13)?.type, 'Time');
    assert.equal(model.resource(3, 9)?.units, '/100');
    assert.equal(model.resource(3, 999), undefined);
    assert.equal(model.get(31024), undefined);
  });

  it('knows the types the codecs need across the set', () => {
    assert.equal(model.resource(1, 1)?.type, 'Integer');
    assert.equal(model.resource(1, 6)?.type, 'Boolean');
    assert.equal(model.resource(5, 0)?.type, 'Opaque');
    assert.equal(model.resource(0, 17)?.type, 'Objlnk');
    assert.equal(model.resource(3303, 5700)?.type, 'Float');
    assert.equal(model.get(3303)?.multiple, true);
    assert.equal(model.resource(0, 0)?.name, 'LWM2M Server URI', 'white space in names is normalised');
  });

  it('names paths', () => {
    assert.deepEqual(model.names(parsePath('/3/0/9')), { object: 'Device', resource: 'Battery Level' });
    assert.deepEqual(model.names(parsePath('/3303/1')), { object: 'Temperature' });
    assert.deepEqual(model.names(parsePath('/3/0/999')), { object: 'Device' });
    assert.deepEqual(model.names(parsePath('/31024/0/1')), {});
    assert.deepEqual(model.names({}), {});
  });

  it('gives every model its own definitions', () => {
    const a = new ObjectModel();
    const b = new ObjectModel();
    a.get(3)?.resources.delete(0);
    assert.equal(a.resource(3, 0), undefined);
    assert.equal(b.resource(3, 0)?.name, 'Manufacturer');
    assert.deepEqual(new ObjectModel([]).ids(), []);
  });

  it('ships compact JSON that round-trips through the compact form', () => {
    assert.equal(coreJson.format, 'lwm2m-objects/1');
    for (const def of coreObjectDefs()) {
      assert.ok(def.resources.size > 0, `Object ${def.id} has resources`);
      assert.deepEqual(fromCompact(toCompact(def)), def);
    }
  });

  it('matches a fresh run of the generator over the OMA registry (set LWM2M_REGISTRY to run)', function () {
    const registry = process.env['LWM2M_REGISTRY'];
    if (!registry) this.skip();
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lwm2m-objects-')), 'core-objects.json');
    execFileSync(process.execPath, [path.join(__dirname, '..', 'scripts', 'gen-objects.js'), registry as string, out]);
    const shipped = fs.readFileSync(path.join(__dirname, '..', 'src', 'lwm2m', 'model', 'core-objects.json'), 'utf8');
    assert.equal(fs.readFileSync(out, 'utf8'), shipped);
  });
});

describe('object model: DDF loading', () => {
  it('loads an OMA registry DDF file', () => {
    const model = new ObjectModel();
    assert.equal(model.get(3443), undefined);
    const defs = model.loadDdf(fs.readFileSync(FIXTURE, 'utf8'));
    assert.equal(defs.length, 1);
    const def = model.get(3443) as ObjectDef;
    assert.equal(def, defs[0]);
    assert.equal(def.name, 'eSIM IoT');
    assert.equal(def.urn, 'urn:oma:lwm2m:ext:3443');
    assert.equal(def.version, '1.0');
    assert.equal(def.lwm2mVersion, '1.0');
    assert.equal(def.multiple, false);
    assert.equal(def.mandatory, false);
    assert.deepEqual([...def.resources.keys()], [0, 1, 2, 3, 4]);
    assert.deepEqual(
      [...def.resources.values()].map((r) => [r.name, r.operations, r.type, r.mandatory]),
      [
        ['State', 'R', 'Integer', true],
        ['EID', 'R', 'String', true],
        ['eIM message', 'W', 'Opaque', true],
        ['IPA message', 'R', 'Opaque', true],
        ['Clear IPA message', 'E', 'none', true],
      ],
    );
    assert.deepEqual(model.names(parsePath('/3443/0/1')), { object: 'eSIM IoT', resource: 'EID' });
  });

  it('types values the codecs decode once the DDF is loaded', () => {
    const tlv = Buffer.from('c10001', 'hex'); // Resource 0 (State), 1 byte: 1
    const before = decodeContent(ContentFormat.TLV, tlv, parsePath('/3443/0'), new ObjectModel());
    assert.deepEqual(before, { '/3443/0/0': Buffer.from([1]) });
    const model = new ObjectModel();
    model.loadDdf(fs.readFileSync(FIXTURE, 'utf8'));
    assert.deepEqual(decodeContent(ContentFormat.TLV, tlv, parsePath('/3443/0'), model), { '/3443/0/0': 1 });
  });

  it('replaces an earlier definition of the same Object', () => {
    const model = new ObjectModel();
    model.loadDdf(ddf('<Name>My Device</Name><ObjectID>3</ObjectID><MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>', item('0', 'Integer')));
    assert.equal(model.get(3)?.name, 'My Device');
    assert.equal(model.resource(3, 0)?.type, 'Integer');
    assert.equal(model.resource(3, 1), undefined);
    assert.equal(model.get(3)?.version, '1.0', 'ObjectVersion defaults to 1.0');
  });

  it('reads the DDF variants found in the registry (BOM, CDATA, entities, comments, empty tags, odd case)', () => {
    const xml =
      '\uFEFF<?xml version="1.0"?>\n<!-- header -->\n<!DOCTYPE LWM2M>\n<LWM2M xmlns:xsi="x">' +
      '<Object ObjectType=\'MODefinition\'>' +
      '<Name>A &amp; B &#x263A;</Name><Description1><![CDATA[a <b> & c]]></Description1><ObjectID> 40002 </ObjectID>' +
      '<ObjectURN>urn:oma:lwm2m:x:40002</ObjectURN><LWM2MVersion>1.1</LWM2MVersion><ObjectVersion>2.0</ObjectVersion>' +
      '<MultipleInstances>multiple</MultipleInstances><Mandatory>optional</Mandatory><Resources>' +
      '<Item ID="1"><Name>Rate</Name><Operations> RW </Operations><MultipleInstances>Multiple</MultipleInstances>' +
      '<Mandatory>Mandatory</Mandatory><Type>unsigned integer</Type><RangeEnumeration>0..10</RangeEnumeration><Units>Hz</Units>' +
      '<Description>x</Description></Item><!-- c -->' +
      '<Item ID="2"><Name>Go</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances>' +
      '<Mandatory>Optional</Mandatory><Type/><RangeEnumeration /><Units></Units></Item>' +
      '</Resources><Description2 /></Object></LWM2M>\n';
    const [def] = parseDdf(xml);
    assert.equal(def?.name, 'A & B \u263A');
    assert.equal(def?.id, 40002);
    assert.equal(def?.version, '2.0');
    assert.equal(def?.multiple, true);
    assert.deepEqual(def?.resources.get(1), {
      id: 1,
      name: 'Rate',
      operations: 'RW',
      multiple: true,
      mandatory: true,
      type: 'Unsigned Integer',
      units: 'Hz',
      rangeEnumeration: '0..10',
    });
    assert.equal(def?.resources.get(2)?.type, 'none');
  });

  it('rejects input that is not a DDF, saying why', () => {
    const model = new ObjectModel();
    assert.throws(() => model.loadDdf('hello'), modelError(/not a DDF document: not an XML document/));
    assert.throws(() => model.loadDdf('<html><body/></html>'), modelError(/root element is <html>, expected <LWM2M>/));
    assert.throws(() => model.loadDdf('<LWM2M></LWM2M>'), modelError(/contains no <Object>/));
    assert.throws(() => model.loadDdf('<LWM2M><Object>'), modelError(/element <Object> is not closed at line 1, column 8/));
    assert.throws(() => model.loadDdf('<LWM2M><Object></Obj></LWM2M>'), modelError(/closing tag <\/Obj> does not match <Object>/));
    assert.throws(() => model.loadDdf('<LWM2M>a & b</LWM2M>'), modelError(/character reference/));
    assert.throws(
      () => model.loadDdf('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><LWM2M>&e;</LWM2M>'),
      modelError(/internal subset is not supported/),
    );
    assert.throws(() => model.loadDdf(''), modelError(/not an XML document/));
    assert.equal(model.get(3)?.name, 'Device', 'a failed load leaves the model as it was');
  });

  it('rejects DDF fields it cannot use, naming the Object and Resource', () => {
    const p = (xml: string): ObjectDef[] => parseDdf(xml);
    assert.throws(() => p(ddf('<Name>X</Name>')), modelError(/ObjectID is missing/));
    assert.throws(() => p(ddf(HEAD.replace('40001', '70000'))), modelError(/ObjectID "70000" is not an integer 0..65535/));
    assert.throws(() => p(ddf(HEAD, item('1', 'Double'))), modelError(/Object 40001 resource 1: unknown Type "Double"/));
    assert.throws(() => p(ddf(HEAD, item('1', 'Float', 'RWX'))), modelError(/Operations must be R, W, RW, E or empty, got "RWX"/));
    assert.throws(() => p(ddf(HEAD, item('1', 'Float', 'R', 'Many'))), modelError(/MultipleInstances must be Single or Multiple/));
    assert.throws(() => p(ddf(HEAD, item('x', 'Float'))), modelError(/Item ID "x"/));
    assert.throws(() => p(ddf(HEAD, item('1', 'Float') + item('1', 'String'))), modelError(/resource 1 is defined twice/));
    assert.throws(() => p(ddf(HEAD.replace('Optional', 'Sometimes'))), modelError(/Mandatory must be Mandatory or Optional/));
    assert.throws(
      () => p('<LWM2M><Object><Name>X</Name><ObjectID>1</ObjectID><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory></Object></LWM2M>'),
      modelError(/<Resources> is missing/),
    );
  });

  it('validates definitions added by code', () => {
    const model = new ObjectModel([]);
    const good: ObjectDef = { id: 40003, name: 'Z', version: '1.0', multiple: true, mandatory: false, resources: new Map() };
    model.add(good);
    assert.equal(model.get(40003), good);
    assert.throws(() => model.add({ ...good, id: -1 }), modelError(/id -1 is not an integer/));
    assert.throws(() => model.add({ ...good, resources: {} as never }), modelError(/resources must be a Map/));
    const r = { id: 1, name: 'r', operations: 'RW' as const, multiple: false, mandatory: false, type: 'Float' as const };
    assert.throws(() => model.add({ ...good, resources: new Map([[2, r]]) }), modelError(/key 2 has a missing or different id/));
    assert.throws(() => model.add({ ...good, resources: new Map([[1, { ...r, type: 'Double' as never }]]) }), modelError(/unknown type "Double"/));
  });
});

describe('XML reader', () => {
  it('reads elements, attributes, text and CDATA', () => {
    const root = parseXml('<a x="1" y=\'&lt;2&gt;\'>t1<b/>t2<![CDATA[<c>]]><d>e</d></a>');
    assert.equal(root.name, 'a');
    assert.deepEqual(root.attributes, { x: '1', y: '<2>' });
    assert.equal(root.text, 't1t2<c>');
    assert.deepEqual(root.children.map((c) => c.name), ['b', 'd']);
    assert.equal(root.children[1]?.text, 'e');
  });

  it('rejects malformed XML with a position', () => {
    assert.throws(() => parseXml('<a><b></a>'), (e: unknown) => e instanceof XmlError && /does not match <b> at line 1/.test((e as Error).message));
    assert.throws(() => parseXml('<a x=1/>'), XmlError);
    assert.throws(() => parseXml('<a x="1" x="2"/>'), /duplicate attribute x/);
    assert.throws(() => parseXml('<a/><b/>'), /unexpected content after the root element/);
    assert.throws(() => parseXml('<a>&#0;</a>'), /unsupported character reference/);
    assert.throws(() => parseXml('<a><!-- x</a>'), /unterminated comment/);
    let deep = '';
    for (let i = 0; i < 100; i++) deep += '<a>';
    assert.throws(() => parseXml(deep), /nested deeper than 64/);
  });
});
