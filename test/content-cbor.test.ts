/**
 * CBOR (60), SenML CBOR (112), LwM2M JSON (11543) and LwM2M CBOR (11544): byte vectors, round-trips of every type
 * in every format, and refusals.
 *
 * The byte vectors are the OMA LwM2M TS examples (the Device Object read /3/0 of TS 1.0 §6.4.4 / TS 1.1 §7.4,
 * the same values as the TLV example) written in each format's syntax, CBOR items in RFC 8949 preferred
 * serialization. Each vector is also decoded by cbor-x on its own to check it says what the comment says.
 */
import assert from 'node:assert/strict';
import {
  ContentFormat,
  Lwm2mContentError,
  Lwm2mValue,
  decodeCbor,
  decodeContent,
  decodeLwm2mJsonRecords,
  decodeSenmlCborRecords,
  decodeSenmlJsonRecords,
  encodeCompositePaths,
  encodeContent,
} from '../src/lwm2m/content';
import { ObjectModel } from '../src/lwm2m/model';
import { parsePath } from '../src/lwm2m/path';
import { DEVICE_VALUES as DEVICE_VALUES_FULL, hex, isContentError, obj, res } from './support/content-fixtures';

const model = new ObjectModel();
const P = parsePath;
const text = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

/** An Object with one Resource of every type. */
const TYPES = new ObjectModel([
  obj(40000, [
    res(0, 'String'),
    res(1, 'Integer'),
    res(2, 'Unsigned Integer'),
    res(3, 'Float'),
    res(4, 'Boolean'),
    res(5, 'Opaque'),
    res(6, 'Time'),
    res(7, 'Objlnk'),
    res(8, 'Corelnk'),
    res(9, 'Integer', true),
  ]),
]);

/** Values of every type that every format carries exactly (JSON numbers are doubles: no bigint here). */
const EVERY_TYPE: Record<string, Lwm2mValue> = {
  '/40000/0/0': 'Grüße "x"',
  '/40000/0/1': -123456789,
  '/40000/0/2': 4294967296,
  '/40000/0/3': 21.5,
  '/40000/0/4': true,
  '/40000/0/5': Buffer.from([0, 1, 0xfe, 0xff]),
  '/40000/0/6': new Date(1367491215000),
  '/40000/0/7': { objectId: 3, instanceId: 0 },
  '/40000/0/8': '</3/0>;rt="x"',
  '/40000/0/9/0': 1,
  '/40000/0/9/7': -1,
};

// ---------------------------------------------------------------------------------------------------------
// Byte vectors

/** Read /3/0 (Device), a subset of the TS example covering strings, a multiple Resource, integers and Time. */
const DEVICE_VALUES: Record<string, Lwm2mValue> = {
  '/3/0/0': 'Open Mobile Alliance',
  '/3/0/6/0': 1,
  '/3/0/6/1': 5,
  '/3/0/9': 100,
  '/3/0/13': new Date(1367491215 * 1000),
  '/3/0/16': 'U',
};

/** [{-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}, {0: "6/0", 2: 1}, {0: "6/1", 2: 5}, {0: "9", 2: 100},
 *  {0: "13", 2: 1367491215}, {0: "16", 3: "U"}] */
const DEVICE_SENML_CBOR = hex(`
  86                                   # array(6)
  a3 21 65 2f332f302f                  # {-2: "/3/0/",
     00 61 30                          #   0: "0",
     03 74 ${text('Open Mobile Alliance')} #  3: "Open Mobile Alliance"}
  a2 00 63 362f30 02 01                # {0: "6/0", 2: 1}
  a2 00 63 362f31 02 05                # {0: "6/1", 2: 5}
  a2 00 61 39 02 18 64                 # {0: "9", 2: 100}
  a2 00 62 3133 02 1a 5182428f         # {0: "13", 2: 1367491215}
  a2 00 62 3136 03 61 55               # {0: "16", 3: "U"}
`);

/** {3: {0: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}, 9: 100, 13: 1367491215, 16: "U"}}} */
const DEVICE_LWM2M_CBOR = hex(`
  a1 03                                # {3:
  a1 00                                #   {0:
  a5                                   #     {
     00 74 ${text('Open Mobile Alliance')} # 0: "Open Mobile Alliance",
     06 a2 00 01 01 05                 #       6: {0: 1, 1: 5},
     09 18 64                          #       9: 100,
     0d 1a 5182428f                    #       13: 1367491215,
     10 61 55                          #       16: "U"}}}
`);

/** The TS 1.0 §6.4.4 Device example (LwM2M JSON), all 16 entries, minified. */
const DEVICE_JSON_FULL =
  '{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"1","sv":"Lightweight M2M Client"},' +
  '{"n":"2","sv":"345000123"},{"n":"3","sv":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},' +
  '{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},{"n":"10","v":15},' +
  '{"n":"11/0","v":0},{"n":"13","v":1367491215},{"n":"14","sv":"+02:00"},{"n":"16","sv":"U"}]}';

describe('byte vectors are what their comments say (checked with cbor-x alone)', () => {
  it('SenML CBOR Device read', () => {
    const doc = decodeCbor(DEVICE_SENML_CBOR, 'test') as Array<Map<number, unknown>>;
    assert.equal(doc.length, 6);
    assert.deepEqual([...(doc[0] as Map<number, unknown>)], [[-2, '/3/0/'], [0, '0'], [3, 'Open Mobile Alliance']]);
    assert.deepEqual([...(doc[4] as Map<number, unknown>)], [[0, '13'], [2, 1367491215]]);
  });

  it('LwM2M CBOR Device read', () => {
    const doc = decodeCbor(DEVICE_LWM2M_CBOR, 'test') as Map<number, Map<number, Map<number, unknown>>>;
    const inst = doc.get(3)?.get(0) as Map<number, unknown>;
    assert.equal(inst.get(0), 'Open Mobile Alliance');
    assert.deepEqual([...(inst.get(6) as Map<number, number>)], [[0, 1], [1, 5]]);
    assert.equal(inst.get(13), 1367491215);
  });
});

describe('CBOR (60)', () => {
  const vectors: Array<[string, unknown, string, Lwm2mValue?]> = [
    // path, value written, bytes, value read back (when different)
    ['/3/0/9', 100, '1864'],
    ['/3/0/14', '+02:00', '66 2b30323a3030'],
    ['/3/0/13', new Date(1367491215000), '1a 5182428f'],
    ['/1/0/6', true, 'f5'],
    ['/1/0/6', false, 'f4'],
    ['/1/0/1', -5, '24'],
    ['/5/0/0', Buffer.from([1, 2, 3]), '43 010203'],
    ['/3303/0/5700', 21.5, 'fa 41ac0000'],
    ['/3303/0/5700', 21, 'fa 41a80000'], // an integral value of a Float Resource stays a float
    ['/3303/0/5700', 0.1, 'fb 3fb999999999999a'],
    ['/0/0/17', { objectId: 21, instanceId: 0 }, '64 32313a30'],
    ['/1/0/1', 9223372036854775807n, '1b 7fffffffffffffff'],
    ['/1/0/1', -9223372036854775808n, '3b 7fffffffffffffff'],
    ['/0/0/13', 18446744073709551615n, '1b ffffffffffffffff'],
    ['/3/0/6/1', 5, '05'],
  ];
  for (const [p, value, bytes, back] of vectors) {
    it(`${p} ${typeof value === 'bigint' ? `${value}n` : Buffer.isBuffer(value) ? 'Buffer' : JSON.stringify(value)} ⇄ ${bytes}`, () => {
      assert.equal(encodeContent(ContentFormat.CBOR, P(p), value, model).toString('hex'), hex(bytes).toString('hex'));
      assert.deepEqual(decodeContent(ContentFormat.CBOR, hex(bytes), P(p), model), { [p]: back ?? value });
    });
  }

  it('reads half, single and double floats, and tag 1 dates', () => {
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('f9 3e00'), P('/3303/0/5700'), model), { '/3303/0/5700': 1.5 });
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('c1 1a 5182428f'), P('/3/0/13'), model), { '/3/0/13': new Date(1367491215000) });
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('1b 0000000000000005'), P('/3/0/9'), model), { '/3/0/9': 5 });
  });

  it('reads Resources unknown to the model by their CBOR type', () => {
    const p = P('/31024/0/1');
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('63 616263'), p, model), { '/31024/0/1': 'abc' });
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('42 abcd'), p, model), { '/31024/0/1': Buffer.from([0xab, 0xcd]) });
    assert.deepEqual(decodeContent(ContentFormat.CBOR, hex('1b ffffffffffffffff'), p, model), { '/31024/0/1': 18446744073709551615n });
  });

  it('refuses what one CBOR value cannot carry', () => {
    assert.throws(() => encodeContent(ContentFormat.CBOR, P('/3/0'), { '0': 'x' }, model), isContentError(/not a Resource/));
    assert.throws(() => encodeContent(ContentFormat.CBOR, P('/3/0/6'), [1, 5], model), isContentError(/one value/));
    assert.throws(() => encodeContent(ContentFormat.CBOR, P('/3/0/7'), 5, model), isContentError(/multiple-instance/));
    assert.throws(() => encodeContent(ContentFormat.CBOR, P('/3/0/9/0'), 5, model), isContentError(/single-instance/));
    assert.throws(() => encodeContent(ContentFormat.CBOR, P('/3/0/9'), 'abc', model), isContentError(/does not fit Integer/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('1864'), P('/3/0'), model), isContentError(/not a Resource/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('a1 00 01'), P('/3/0/9'), model), isContentError(/expected a Resource value, got a map/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('82 01 02'), P('/3/0/9'), model), isContentError(/expected a Resource value/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('f6'), P('/3/0/9'), model), isContentError(/expected a Resource value, got null/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('1864 00'), P('/3/0/9'), model), isContentError(/invalid CBOR/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('19 01'), P('/3/0/9'), model), isContentError(/invalid CBOR/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, Buffer.alloc(0), P('/3/0/9'), model), isContentError(/empty payload/));
    assert.throws(() => decodeContent(ContentFormat.CBOR, hex('d8 63 01'), P('/3/0/9'), model), isContentError(/expected a Resource value/));
  });
});

describe('SenML CBOR (112)', () => {
  // RFC 8428 §6: the CBOR dump of the §5.1.2 example, byte for byte as printed in the RFC (including its 1.5
  // written as a half float), and the §5.1.2 JSON text it encodes. Both decode to the same resolved records.
  const RFC8428_CBOR = hex(`
    87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a
    31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
    22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00
    67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
    66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06
    24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
    72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc
    cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
    f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e
    74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
    74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67
    63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
    33 33 33
  `);
  const RFC8428_JSON = `[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]`;

  it('decodes the RFC 8428 §6 example (0xc3 bytes) to the records of its §5.1.2 JSON form', () => {
    assert.equal(RFC8428_CBOR.length, 0xc3);
    const cbor = decodeSenmlCborRecords(RFC8428_CBOR);
    const bn = 'urn:dev:ow:10e2073a0108006:';
    const bt = 1276020076.001;
    assert.deepEqual(cbor, [
      { name: `${bn}voltage`, time: bt, kind: 'v', value: 120.1 },
      { name: `${bn}current`, time: bt - 5, kind: 'v', value: 1.2 },
      { name: `${bn}current`, time: bt - 4, kind: 'v', value: 1.3 },
      { name: `${bn}current`, time: bt - 3, kind: 'v', value: 1.4 },
      { name: `${bn}current`, time: bt - 2, kind: 'v', value: 1.5 },
      { name: `${bn}current`, time: bt - 1, kind: 'v', value: 1.6 },
      { name: `${bn}current`, time: bt, kind: 'v', value: 1.7 },
    ]);
    assert.deepEqual(decodeSenmlJsonRecords(Buffer.from(RFC8428_JSON)), cbor);
  });

  it('refuses the RFC 8428 example as an LwM2M payload, its names not being LwM2M paths', () => {
    assert.throws(() => decodeContent(ContentFormat.SENML_CBOR, RFC8428_CBOR, P('/3/0'), model), isContentError(/not an LwM2M path/));
  });

  it('decodes the Device read with base name and integer labels', () => {
    assert.deepEqual(decodeContent(ContentFormat.SENML_CBOR, DEVICE_SENML_CBOR, P('/3/0'), model), DEVICE_VALUES);
  });

  it('encodes the Device values to exactly those bytes', () => {
    assert.equal(encodeContent(ContentFormat.SENML_CBOR, P('/3/0'), DEVICE_VALUES, model).toString('hex'), DEVICE_SENML_CBOR.toString('hex'));
  });

  it('writes every value kind with its label: v 2, vs 3, vb 4, vd 8 (byte string), "vlo"; a Float as float', () => {
    const values = {
      '/40000/0/3': 1,
      '/40000/0/4': true,
      '/40000/0/5': Buffer.from([1, 2]),
      '/40000/0/7': { objectId: 3, instanceId: 0 },
    };
    const expected = hex(`
      84
      a3 21 69 ${text('/40000/0/')} 00 61 33 02 fa 3f800000   # {-2: "/40000/0/", 0: "3", 2: 1.0}
      a2 00 61 34 04 f5                                      # {0: "4", 4: true}
      a2 00 61 35 08 42 0102                                 # {0: "5", 8: h'0102'}
      a2 00 61 37 63 ${text('vlo')} 63 ${text('3:0')}        # {0: "7", "vlo": "3:0"}
    `);
    assert.equal(encodeContent(ContentFormat.SENML_CBOR, P('/40000/0'), values, TYPES).toString('hex'), expected.toString('hex'));
    assert.deepEqual(decodeContent(ContentFormat.SENML_CBOR, expected, P('/40000/0'), TYPES), values);
  });

  it('writes one Resource with its full name, a composite write with full names, and composite read paths', () => {
    assert.equal(
      encodeContent(ContentFormat.SENML_CBOR, P('/1/0/1'), 600, model).toString('hex'),
      hex(`81 a2 00 66 ${text('/1/0/1')} 02 19 0258`).toString('hex'),
    );
    assert.equal(
      encodeContent(ContentFormat.SENML_CBOR, P('/'), { '/1/0/1': 600, '/3/0/14': '+01' }, model).toString('hex'),
      hex(`82 a2 00 66 ${text('/1/0/1')} 02 19 0258  a2 00 67 ${text('/3/0/14')} 03 63 ${text('+01')}`).toString('hex'),
    );
    assert.equal(
      encodeCompositePaths(ContentFormat.SENML_CBOR, [P('/3/0/1'), P('/1/0')]).toString('hex'),
      hex(`82 a1 00 66 ${text('/3/0/1')} a1 00 64 ${text('/1/0')}`).toString('hex'),
    );
  });

  it('resolves base time and keeps the latest record of a time series', () => {
    // [{-2: "/3303/0/5700", -3: 1700000000, 6: -10, 2: 20.5}, {6: 0, 2: 21.5}, {6: -5, 2: 21.0}]
    const payload = hex(`
      83
      a4 21 6c ${text('/3303/0/5700')} 22 1a 6553f100 06 29 02 f9 4d20
      a2 06 00 02 f9 4d60
      a2 06 24 02 f9 4d40
    `);
    assert.deepEqual(decodeSenmlCborRecords(payload).map((r) => r.time), [1699999990, 1700000000, 1699999995]);
    assert.deepEqual(decodeContent(ContentFormat.SENML_CBOR, payload, P('/3303/0/5700'), model), { '/3303/0/5700': 21.5 });
  });

  it('keeps 64-bit integers exact', () => {
    const v = 9223372036854775807n;
    const out = encodeContent(ContentFormat.SENML_CBOR, P('/1/0/1'), v, model);
    assert.ok(out.includes(hex('1b 7fffffffffffffff')));
    assert.deepEqual(decodeContent(ContentFormat.SENML_CBOR, out, P('/1/0/1'), model), { '/1/0/1': v });
  });

  it('refuses bad CBOR and bad SenML with Lwm2mContentError', () => {
    const e = (payload: string, re: RegExp): void => {
      assert.throws(() => decodeContent(ContentFormat.SENML_CBOR, hex(payload), P('/3/0'), model), isContentError(re));
    };
    e('81 a2 00 61', /invalid SenML CBOR/);
    e('a1 00 01', /expected an array of records/);
    e('81 01', /record 0 is not a map/);
    e(`81 a2 00 66 ${text('/3/0/9')} 02 63 ${text('100')}`, /v must be a number/);
    e(`81 a3 00 66 ${text('/3/0/9')} 02 01 03 61 31`, /more than one value field/);
    e(`81 a2 00 66 ${text('/3/0/5')} 08 62 ${text('!!')}`, /not valid base64/);
    e(`81 a2 00 66 ${text('/3/0/5')} 08 01`, /vd must be a byte string/);
    e(`81 a2 00 67 ${text('/0/0/17')} 63 ${text('vlo')} 63 ${text('3-0')}`, /vlo "3-0" is not objectId:instanceId/);
    e(`81 a2 00 66 ${text('/3/0/9')} 62 ${text('x_')} 01`, /must be understood/);
    e(`81 a2 00 66 ${text('/3/0/9')} 61 ${text('n')} 61 30`, /n is given twice/);
    e('81 a1 02 01', /no name/);
    e(`81 a2 00 64 ${text('/3/0')} 02 01`, /does not name a Resource/);
    e(`81 a2 82 01 02 01 02 01`, /label that is neither an integer nor text/);
  });

  it('refuses writes SenML cannot express', () => {
    assert.throws(() => encodeContent(ContentFormat.SENML_CBOR, P('/31024'), { '1': 42 }, model), isContentError(/give the instance/));
    assert.throws(() => encodeContent(ContentFormat.SENML_CBOR, P('/3/0/6'), 5, model), isContentError(/multiple-instance/));
  });
});

describe('LwM2M JSON (11543)', () => {
  it('decodes the TS 1.0 Device example', () => {
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from(DEVICE_JSON_FULL), P('/3/0'), model), DEVICE_VALUES_FULL);
  });

  it('encodes the Device values to exactly the example text', () => {
    assert.equal(encodeContent(ContentFormat.LWM2M_JSON, P('/3/0'), DEVICE_VALUES_FULL, model).toString(), DEVICE_JSON_FULL);
  });

  it('reads and writes sv, v, bv and ov', () => {
    const m = new ObjectModel([obj(40000, [res(0, 'String'), res(1, 'Integer'), res(2, 'Boolean'), res(3, 'Objlnk')])]);
    const json = '{"bn":"/40000/0/","e":[{"n":"0","sv":"x"},{"n":"1","v":1},{"n":"2","bv":true},{"n":"3","ov":"3:0"}]}';
    const values = { '/40000/0/0': 'x', '/40000/0/1': 1, '/40000/0/2': true, '/40000/0/3': { objectId: 3, instanceId: 0 } };
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from(json), P('/40000/0'), m), values);
    assert.equal(encodeContent(ContentFormat.LWM2M_JSON, P('/40000/0'), values, m).toString(), json);
  });

  it('writes one Resource relative to its instance, Opaque as base64 in sv, and a Float as a number', () => {
    assert.equal(encodeContent(ContentFormat.LWM2M_JSON, P('/1/0/1'), 600, model).toString(), '{"bn":"/1/0/","e":[{"n":"1","v":600}]}');
    assert.equal(
      encodeContent(ContentFormat.LWM2M_JSON, P('/5/0/0'), Buffer.from([0xfb, 0xff]), model).toString(),
      '{"bn":"/5/0/","e":[{"n":"0","sv":"+/8="}]}',
    );
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from('{"bn":"/5/0/","e":[{"n":"0","sv":"-_8"}]}'), P('/5/0/0'), model), {
      '/5/0/0': Buffer.from([0xfb, 0xff]),
    });
    assert.equal(encodeContent(ContentFormat.LWM2M_JSON, P('/3303/0/5700'), 21.5, model).toString(), '{"bn":"/3303/0/","e":[{"n":"5700","v":21.5}]}');
  });

  it('uses the request path when bn is absent, and resolves bt + t keeping the latest entry', () => {
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from('{"e":[{"n":"9","v":80}]}'), P('/3/0'), model), { '/3/0/9': 80 });
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from('{"e":[{"v":80}]}'), P('/3/0/9'), model), { '/3/0/9': 80 });
    const series = '{"bn":"/3303/0/5700","bt":1700000000,"e":[{"v":20.5,"t":-10},{"v":21.5},{"v":21,"t":-5}]}';
    assert.deepEqual(decodeLwm2mJsonRecords(Buffer.from(series), P('/3303/0/5700')).map((r) => r.time), [1699999990, 1700000000, 1699999995]);
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_JSON, Buffer.from(series), P('/3303/0/5700'), model), { '/3303/0/5700': 21.5 });
  });

  it('refuses bad input with Lwm2mContentError', () => {
    const e = (payload: string, re: RegExp): void => {
      assert.throws(() => decodeContent(ContentFormat.LWM2M_JSON, Buffer.from(payload), P('/3/0'), model), isContentError(re));
    };
    e('{"bn":"/3/0/","e":[', /invalid LwM2M JSON/);
    e('[{"n":"0","sv":"x"}]', /expected an object/);
    e('{"bn":"/3/0/"}', /"e" must be an array/);
    e('{"bn":3,"e":[]}', /bn must be a string/);
    e('{"e":[7]}', /entry 0 is not an object/);
    e('{"e":[{"n":"9","v":"100"}]}', /v must be a number/);
    e('{"e":[{"n":"9","v":1,"sv":"1"}]}', /more than one value field/);
    e('{"e":[{"n":"0","bv":"yes"}]}', /bv must be true or false/);
    e('{"bn":"/0/0/","e":[{"n":"17","ov":"3-0"}]}', /vlo "3-0" is not objectId:instanceId/);
    e('{"bn":"/3/x/","e":[{"n":"9","v":1}]}', /is not an LwM2M path/);
    assert.throws(() => encodeContent(ContentFormat.LWM2M_JSON, P('/'), { '/1/0/1': 600 }, model), isContentError(/composite/));
    assert.throws(() => encodeContent(ContentFormat.LWM2M_JSON, P('/3303/0/5700'), Infinity, model), isContentError(/cannot be sent/));
  });
});

describe('LwM2M CBOR (11544)', () => {
  it('decodes the Device read (nested maps keyed by ID)', () => {
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_CBOR, DEVICE_LWM2M_CBOR, P('/3/0'), model), DEVICE_VALUES);
  });

  it('encodes the Device values to exactly those bytes', () => {
    assert.equal(encodeContent(ContentFormat.LWM2M_CBOR, P('/3/0'), DEVICE_VALUES, model).toString('hex'), DEVICE_LWM2M_CBOR.toString('hex'));
  });

  it('reads keys that are arrays of IDs (several levels at once)', () => {
    // {[3, 0]: {9: 100, [6, 1]: 5}, [1, 0, 1]: 600}
    const payload = hex('a2 82 03 00 a2 09 18 64 82 06 01 05 83 01 00 01 19 0258');
    assert.deepEqual(decodeContent(ContentFormat.LWM2M_CBOR, payload, P('/'), model), { '/3/0/9': 100, '/3/0/6/1': 5, '/1/0/1': 600 });
  });

  it('writes one Resource, a composite write and an empty multiple Resource', () => {
    assert.equal(encodeContent(ContentFormat.LWM2M_CBOR, P('/1/0/1'), 600, model).toString('hex'), 'a101a100a101190258');
    assert.equal(
      encodeContent(ContentFormat.LWM2M_CBOR, P('/'), { '/1/0/1': 600, '/3/0/14': '+01' }, model).toString('hex'),
      hex(`a2 01 a1 00 a1 01 19 0258  03 a1 00 a1 0e 63 ${text('+01')}`).toString('hex'),
    );
    assert.equal(encodeContent(ContentFormat.LWM2M_CBOR, P('/3/0/6'), [], model).toString('hex'), 'a103a100a106a0');
    assert.equal(encodeContent(ContentFormat.LWM2M_CBOR, P('/3303/0/5700'), 21, model).toString('hex'), hex('a1 190ce7 a1 00 a1 191644 fa 41a80000').toString('hex'));
  });

  it('refuses malformed structures', () => {
    const e = (payload: string, re: RegExp): void => {
      assert.throws(() => decodeContent(ContentFormat.LWM2M_CBOR, hex(payload), P('/3/0'), model), isContentError(re));
    };
    e('81 01', /expected a map keyed by Object ID/);
    e('a1 03 a1', /invalid LwM2M CBOR/);
    e('a1 61 61 01', /key "a" under \/ is not an ID/);
    e('a1 1a 00010000 01', /key 65536 under \/ is not an ID/);
    e('a1 80 01', /empty path key/);
    e('a1 03 a1 00 01', /\/3\/0 carries a value but does not name a Resource/);
    e('a1 85 03 00 06 00 01 01', /more than 4 levels/);
    e('a1 84 03 00 06 00 a1 00 01', /more than 4 levels|holds a map/);
    e('a2 83 03 00 09 01 83 03 00 09 02', /\/3\/0\/9 appears twice/);
    e('a1 83 03 00 09 82 01 02', /expected a Resource value/);
    assert.throws(() => encodeContent(ContentFormat.LWM2M_CBOR, P('/31024'), { '1': 42 }, model), isContentError(/needs the instance/));
    assert.throws(() => encodeContent(ContentFormat.LWM2M_CBOR, P('/3/0/9'), [1], model), isContentError(/single-instance/));
    assert.throws(() => encodeContent(ContentFormat.LWM2M_CBOR, P('/3/0/6'), 5, model), isContentError(/multiple-instance/));
  });
});

describe('every type round-trips in every format', () => {
  const objectFormats = [ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_JSON, ContentFormat.LWM2M_CBOR];
  for (const f of objectFormats) {
    it(`format ${f}: an Object Instance with every type`, () => {
      const out = encodeContent(f, P('/40000/0'), EVERY_TYPE, TYPES);
      assert.deepEqual(decodeContent(f, out, P('/40000/0'), TYPES), EVERY_TYPE);
    });
  }
  for (const f of [ContentFormat.TEXT, ContentFormat.CBOR, ...objectFormats]) {
    it(`format ${f}: each Resource alone`, () => {
      for (const [key, value] of Object.entries(EVERY_TYPE)) {
        const out = encodeContent(f, P(key), value, TYPES);
        assert.deepEqual(decodeContent(f, out, P(key), TYPES), { [key]: value }, `${key} in ${f}`);
      }
    });
  }
  for (const f of [ContentFormat.TLV, ContentFormat.CBOR, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR]) {
    it(`format ${f}: 64-bit integers as bigint, and integral Floats`, () => {
      for (const [key, value] of [
        ['/40000/0/1', -9223372036854775808n],
        ['/40000/0/2', 18446744073709551615n],
        ['/40000/0/3', 3],
        ['/40000/0/3', -0.5],
      ] as Array<[string, Lwm2mValue]>) {
        const out = encodeContent(f, P(key), value, TYPES);
        assert.deepEqual(decodeContent(f, out, P(key), TYPES), { [key]: value }, `${key} in ${f}`);
      }
    });
  }

  it('refuses a composite path list in formats without one', () => {
    assert.throws(() => encodeCompositePaths(ContentFormat.TLV, [P('/3/0')]), isContentError(/senml-json or senml-cbor/));
  });
});

describe('CBOR formats on random and mutated input', () => {
  it('never throw anything but a plain Lwm2mContentError', () => {
    let seed = 4242;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const paths = [P('/'), P('/3'), P('/3/0'), P('/3/0/6'), P('/3/0/6/1'), P('/3/0/13'), P('/3303/0/5700'), P('/31024/1')];
    const formats = [ContentFormat.CBOR, ContentFormat.SENML_CBOR, ContentFormat.LWM2M_CBOR, ContentFormat.LWM2M_JSON];
    const seeds = [DEVICE_SENML_CBOR, DEVICE_LWM2M_CBOR, Buffer.from(DEVICE_JSON_FULL)];
    let decoded = 0;
    for (let i = 0; i < 3000; i++) {
      const noise = Buffer.alloc(rand() % 40);
      for (let j = 0; j < noise.length; j++) noise[j] = rand() & 0xff;
      const mutated = Buffer.from(seeds[i % seeds.length] as Buffer);
      for (let k = 0; k < 1 + (rand() % 3); k++) mutated[rand() % mutated.length] = rand() & 0xff;
      for (const payload of [noise, mutated, mutated.subarray(0, rand() % mutated.length)]) {
        for (const fmt of formats) {
          const path = paths[rand() % paths.length] as Parameters<typeof decodeContent>[2];
          try {
            decodeContent(fmt, payload, path, model);
            decoded++;
          } catch (e) {
            assert.ok(e instanceof Lwm2mContentError, `format ${fmt}: ${String(e)}`);
            assert.equal((e as Error).cause, undefined, `format ${fmt} ${payload.toString('hex')}: ${(e as Error).message}`);
          }
        }
      }
    }
    assert.ok(decoded > 0);
  });
});
