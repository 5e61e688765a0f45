import assert from 'node:assert/strict';
import {
  ContentFormat,
  Lwm2mContentError,
  Lwm2mValue,
  TlvType,
  decodeContent,
  decodeSenmlJsonRecords,
  encodeCompositePaths,
  encodeContent,
  formatByName,
  formatName,
  parseLinkFormat,
  readTlv,
  unwrapSingle,
  writeTlv,
} from '../src/lwm2m/content';
import { ObjectModel } from '../src/lwm2m/model';
import { Lwm2mPath, parsePath } from '../src/lwm2m/path';
import { DEVICE_VALUES, hex, isContentError, obj, res } from './support/content-fixtures';

const model = new ObjectModel();
const P = parsePath;

// ---------------------------------------------------------------------------------------------------------
// Byte vectors from the OMA LwM2M Core TS (TLV examples, §7.4.3 in 1.1 / §6.4.3 in 1.0).

/** Read /3/0, "Single Object Instance Request Example" (Device Object), without the Object Instance wrapper. */
const DEVICE_TLV = hex(`
  C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
  C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
  C8 02 09 33 34 35 30 30 30 31 32 33
  C3 03 31 2E 30
  86 06 41 00 01 41 01 05
  88 07 08 42 00 0E D8 42 01 13 88
  87 08 41 00 7D 42 01 03 84
  C1 09 64
  C1 0A 0F
  83 0B 41 00 00
  C4 0D 51 82 42 8F
  C6 0E 2B 30 32 3A 30 30
  C1 10 55`);

/** Read /2, "Multiple Object Instance Request Example" (Access Control: ACL is a multiple-instance Resource). */
const ACCESS_CONTROL_TLV = hex(`
  08 00 0E  C1 00 01  C1 01 00  83 02 41 7F 07  C1 03 7F
  08 02 12  C1 00 03  C1 01 00  87 02 41 7F 07 61 01 36 01  C1 03 7F`);

const ACCESS_CONTROL_VALUES: Record<string, Lwm2mValue> = {
  '/2/0/0': 1,
  '/2/0/1': 0,
  '/2/0/2/127': 7,
  '/2/0/3': 127,
  '/2/2/0': 3,
  '/2/2/1': 0,
  '/2/2/2/127': 7,
  '/2/2/2/310': 1,
  '/2/2/3': 127,
};

/** Read /1, Server Object instance 0 (Short Server ID 1, Lifetime 86400, Notification Storing true, Binding U). */
const SERVER_TLV = hex('08 00 0F  C1 00 01  C4 01 00 01 51 80  C1 06 01  C1 07 55');

describe('content formats: names and numbers', () => {
  it('maps every SPEC msg.format name', () => {
    assert.equal(formatByName('text'), 0);
    assert.equal(formatByName('link'), 40);
    assert.equal(formatByName('opaque'), 42);
    assert.equal(formatByName('cbor'), 60);
    assert.equal(formatByName('senml-json'), 110);
    assert.equal(formatByName('senml-cbor'), 112);
    assert.equal(formatByName('tlv'), 11542);
    assert.equal(formatByName('json'), 11543);
    assert.equal(formatByName('lwm2m-cbor'), 11544);
    assert.equal(formatByName('TLV'), 11542);
    assert.equal(formatByName('11542'), 11542);
  });

  it('leaves auto and empty to the caller', () => {
    assert.equal(formatByName('auto'), undefined);
    assert.equal(formatByName(''), undefined);
    assert.equal(formatByName(undefined), undefined);
  });

  it('rejects an unknown name listing the valid ones', () => {
    assert.throws(() => formatByName('xml'), isContentError(/unknown format "xml".*senml-json/));
  });

  it('names numbers, including the pre-registration LwM2M 1.0 numbers', () => {
    assert.equal(formatName(ContentFormat.TLV), 'tlv');
    assert.equal(formatName(ContentFormat.SENML_JSON), 'senml-json');
    assert.equal(formatName(1542), 'tlv');
    assert.equal(formatName(9999), '9999');
    for (const name of ['text', 'link', 'opaque', 'cbor', 'senml-json', 'senml-cbor', 'tlv', 'json', 'lwm2m-cbor']) {
      assert.equal(formatName(formatByName(name) as number), name);
    }
  });
});

describe('TLV (11542)', () => {
  describe('OMA TS examples', () => {
    it('decodes the Device Object instance example by resource type', () => {
      const v = decodeContent(ContentFormat.TLV, DEVICE_TLV, P('/3/0'), model);
      assert.deepEqual(v, DEVICE_VALUES);
      assert.ok(v['/3/0/13'] instanceof Date);
      assert.equal((v['/3/0/13'] as Date).toISOString(), '2013-05-02T10:40:15.000Z');
    });

    it('decodes the same payload with the Object Instance wrapper (08 00 79), read on /3 and /3/0', () => {
      const wrapped = Buffer.concat([hex('08 00 79'), DEVICE_TLV]);
      assert.equal(DEVICE_TLV.length, 0x79);
      assert.deepEqual(decodeContent(ContentFormat.TLV, wrapped, P('/3'), model), DEVICE_VALUES);
      assert.deepEqual(decodeContent(ContentFormat.TLV, wrapped, P('/3/0'), model), DEVICE_VALUES);
    });

    it('encodes the Device Object values back to the exact example bytes', () => {
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/3/0'), DEVICE_VALUES, model), DEVICE_TLV);
    });

    it('encodes the Device Object at Object level into the wrapped form', () => {
      const out = encodeContent(ContentFormat.TLV, P('/3'), DEVICE_VALUES, model);
      assert.deepEqual(out, Buffer.concat([hex('08 00 79'), DEVICE_TLV]));
    });

    it('decodes the multiple-instance example (Access Control, 16-bit Resource Instance ID 310)', () => {
      assert.deepEqual(decodeContent(ContentFormat.TLV, ACCESS_CONTROL_TLV, P('/2'), model), ACCESS_CONTROL_VALUES);
    });

    it('encodes the Access Control instances back to the exact example bytes', () => {
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/2'), ACCESS_CONTROL_VALUES, model), ACCESS_CONTROL_TLV);
    });

    it('round-trips the Server Object example (4-byte Integer, Boolean, String)', () => {
      const values = { '/1/0/0': 1, '/1/0/1': 86400, '/1/0/6': true, '/1/0/7': 'U' };
      assert.deepEqual(decodeContent(ContentFormat.TLV, SERVER_TLV, P('/1'), model), values);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/1'), values, model), SERVER_TLV);
    });

    it('handles the Object Link examples (Objlnk in a multiple Resource, null link 65535:65535)', () => {
      const m = new ObjectModel([
        obj(65, [res(0, 'Objlnk', true), res(1, 'String'), res(2, 'Integer')]),
        obj(66, [res(0, 'String'), res(1, 'String'), res(2, 'Objlnk')]),
      ]);
      const o65 = hex(`88 00 0C 44 00 00 42 00 00 44 01 00 42 00 01
                       C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30
                       C4 02 12 34 56 78`);
      const v65 = {
        '/65/0/0/0': { objectId: 66, instanceId: 0 },
        '/65/0/0/1': { objectId: 66, instanceId: 1 },
        '/65/0/1': '8613800755500',
        '/65/0/2': 0x12345678,
      };
      assert.deepEqual(decodeContent(ContentFormat.TLV, o65, P('/65/0'), m), v65);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/65/0'), v65, m), o65);

      const o66 = hex(`08 00 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 31
                       C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 34
                       C4 02 00 43 00 00
                       08 01 26 C8 00 0B 6D 79 53 65 72 76 69 63 65 20 32
                       C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 35
                       C4 02 FF FF FF FF`);
      const v66 = {
        '/66/0/0': 'myService 1',
        '/66/0/1': 'Internet.15.234',
        '/66/0/2': { objectId: 67, instanceId: 0 },
        '/66/1/0': 'myService 2',
        '/66/1/1': 'Internet.15.235',
        '/66/1/2': { objectId: 65535, instanceId: 65535 },
      };
      assert.deepEqual(decodeContent(ContentFormat.TLV, o66, P('/66'), m), v66);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/66'), v66, m), o66);
    });
  });

  describe('structure', () => {
    it('reads nested entries with their types and IDs', () => {
      const entries = readTlv(ACCESS_CONTROL_TLV);
      assert.equal(entries.length, 2);
      assert.equal(entries[1]?.type, TlvType.OBJECT_INSTANCE);
      assert.equal(entries[1]?.id, 2);
      const acl = entries[1]?.children?.[2];
      assert.equal(acl?.type, TlvType.MULTIPLE_RESOURCE);
      assert.deepEqual(acl?.children?.map((c) => [c.type, c.id]), [
        [TlvType.RESOURCE_INSTANCE, 127],
        [TlvType.RESOURCE_INSTANCE, 310],
      ]);
    });

    it('uses 8-, 16- and 24-bit length fields and 16-bit identifiers when needed', () => {
      const cases: Array<[number, number, string]> = [
        [7, 1, 'c701'], // length in the type octet
        [8, 1, 'c80108'], // 8-bit length
        [300, 1, 'd001012c'], // 16-bit length
        [70000, 1, 'd801011170'], // 24-bit length
        [1, 5700, 'e11644'], // 16-bit identifier
      ];
      for (const [len, id, head] of cases) {
        const out = writeTlv([{ type: TlvType.RESOURCE, id, value: Buffer.alloc(len, 0xab) }]);
        assert.equal(out.subarray(0, head.length / 2).toString('hex'), head, `length ${len} id ${id}`);
        assert.equal(out.length, head.length / 2 + len);
        const back = readTlv(out);
        assert.equal(back[0]?.id, id);
        assert.equal(back[0]?.value?.length, len);
      }
    });

    it('accepts Resource Instances without their Multiple Resource wrapper on a Resource read', () => {
      const v = decodeContent(ContentFormat.TLV, hex('41 00 01 41 01 05'), P('/3/0/6'), model);
      assert.deepEqual(v, { '/3/0/6/0': 1, '/3/0/6/1': 5 });
    });

    it('reads one Resource Instance, with or without the Multiple Resource wrapper', () => {
      assert.deepEqual(decodeContent(ContentFormat.TLV, hex('42 01 13 88'), P('/3/0/7/1'), model), { '/3/0/7/1': 5000 });
      assert.deepEqual(decodeContent(ContentFormat.TLV, hex('84 07 42 01 13 88'), P('/3/0/7/1'), model), { '/3/0/7/1': 5000 });
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/3/0/7/1'), 5000, model), hex('42 01 13 88'));
    });

    it('decodes Resources unknown to the model as Buffers', () => {
      const v = decodeContent(ContentFormat.TLV, hex('C1 63 64 C3 05 61 62 63'), P('/3/0'), model);
      assert.deepEqual(Object.keys(v), ['/3/0/99', '/3/0/5']);
      assert.deepEqual(v['/3/0/99'], Buffer.from([0x64]));
      // Resource 5 (Factory Reset) is executable: its bytes come back raw as well.
      assert.deepEqual(v['/3/0/5'], Buffer.from('abc'));
      const unknownObject = decodeContent(ContentFormat.TLV, hex('C1 00 2A'), P('/31024/0'), model);
      assert.deepEqual(unknownObject, { '/31024/0/0': Buffer.from([0x2a]) });
    });

    it('writes a Create without instance ID as bare Resources, with instance ID inside an Object Instance', () => {
      const m = new ObjectModel([obj(31024, [res(1, 'Integer'), res(2, 'String')])]);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/31024'), { '1': 42 }, m), hex('C1 01 2A'));
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/31024'), { '/31024/7/1': 42 }, m), hex('03 07 C1 01 2A'));
      assert.throws(
        () => encodeContent(ContentFormat.TLV, P('/31024'), { '1': 42, '/31024/7/2': 'x' }, m),
        isContentError(/mix of Resource-ID keys/),
      );
    });

    it('writes an instance with Resource-ID keys, full-path keys and multiple Resources as arrays or objects', () => {
      const byId = encodeContent(ContentFormat.TLV, P('/1/0'), { '1': 600, '3': 10 }, model);
      const byPath = encodeContent(ContentFormat.TLV, P('/1/0'), { '/1/0/1': 600, '/1/0/3': 10 }, model);
      assert.deepEqual(byId, hex('C2 01 02 58 C1 03 0A'));
      assert.deepEqual(byPath, byId);
      const arr = encodeContent(ContentFormat.TLV, P('/3/0/6'), [1, 5], model);
      const rec = encodeContent(ContentFormat.TLV, P('/3/0/6'), { '0': 1, '1': 5 }, model);
      assert.deepEqual(arr, hex('86 06 41 00 01 41 01 05'));
      assert.deepEqual(rec, arr);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/3/0'), { '6/0': 1, '6/1': 5 }, model), arr);
      assert.deepEqual(encodeContent(ContentFormat.TLV, P('/3/0/6'), [], model), hex('80 06'));
    });
  });

  describe('round-trips every type', () => {
    const m = new ObjectModel([
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
    const cases: Array<[number, unknown, string]> = [
      [0, 'héllo', 'c6 00 68c3a96c6c6f'],
      [0, 'Lightweight', 'c8 00 0b 4c696768747765696768 74'],
      [0, '', 'c0 00'],
      [1, 0, 'c1 01 00'],
      [1, -1, 'c1 01 ff'],
      [1, 127, 'c1 01 7f'],
      [1, 128, 'c2 01 0080'],
      [1, -32769, 'c4 01 ffff7fff'],
      [1, 2147483648, 'c8 01 08 0000000080000000'],
      [1, -9007199254740991, 'c8 01 08 ffe0000000000001'],
      [1, 9223372036854775807n, 'c8 01 08 7fffffffffffffff'],
      [1, -9223372036854775808n, 'c8 01 08 8000000000000000'],
      [2, 200, 'c1 02 c8'],
      [2, 65535, 'c2 02 ffff'],
      [2, 18446744073709551615n, 'c8 02 08 ffffffffffffffff'],
      [3, 23.5, 'c4 03 41bc0000'], // exact in single precision → 4 bytes
      [3, 0.1, 'c8 03 08 3fb999999999999a'], // not exact → 8 bytes
      [3, -0, 'c4 03 80000000'],
      [4, true, 'c1 04 01'],
      [4, false, 'c1 04 00'],
      [5, Buffer.from([0, 1, 2, 0xff]), 'c4 05 000102ff'],
      [6, new Date(1367491215000), 'c4 06 5182428f'],
      [6, new Date(-1000), 'c1 06 ff'],
      [7, { objectId: 3, instanceId: 0 }, 'c4 07 00030000'],
      [8, '</3/0>', 'c6 08 3c2f332f303e'],
    ];
    for (const [rid, value, bytes] of cases) {
      it(`resource ${rid}: ${typeof value === 'bigint' ? `${value}n` : Buffer.isBuffer(value) ? 'Buffer' : JSON.stringify(value)}`, () => {
        const path = P(`/40000/0/${rid}`);
        const out = encodeContent(ContentFormat.TLV, path, value, m);
        assert.equal(out.toString('hex'), bytes.replace(/\s+/g, ''));
        const back = decodeContent(ContentFormat.TLV, out, path, m);
        assert.deepEqual(Object.keys(back), [`/40000/0/${rid}`]);
        assert.deepEqual(unwrapSingle(back, path), value);
      });
    }

    it('decodes 8-byte integers beyond 2^53 as bigint and within as number', () => {
      const v = decodeContent(ContentFormat.TLV, hex('c8 01 08 0020000000000001'), P('/40000/0/1'), m);
      assert.equal(v['/40000/0/1'], 9007199254740993n);
      const w = decodeContent(ContentFormat.TLV, hex('c8 01 08 0000000000000005'), P('/40000/0/1'), m);
      assert.equal(w['/40000/0/1'], 5);
    });

    it('decodes 8-byte floats', () => {
      const v = decodeContent(ContentFormat.TLV, hex('c8 03 08 400921fb54442d18'), P('/40000/0/3'), m);
      assert.equal(v['/40000/0/3'], Math.PI);
    });

    it('converts convenient JS values to the Resource type', () => {
      const enc = (rid: number, v: unknown): string => encodeContent(ContentFormat.TLV, P(`/40000/0/${rid}`), v, m).toString('hex');
      assert.equal(enc(1, '42'), 'c1012a');
      assert.equal(enc(3, '2.5'), 'c40340200000');
      assert.equal(enc(4, 'true'), 'c10401');
      assert.equal(enc(4, 0), 'c10400');
      assert.equal(enc(5, 'AB'), 'c2054142');
      assert.equal(enc(5, { type: 'Buffer', data: [1, 2] }), 'c2050102');
      assert.equal(enc(6, 1367491215), 'c4065182428f');
      assert.equal(enc(6, '2013-05-02T10:40:15Z'), 'c4065182428f');
      assert.equal(enc(7, '3:1'), 'c40700030001');
      assert.equal(enc(0, 42), 'c2003432');
    });

    it('encodes values for unknown Resources by their JS type', () => {
      const enc = (v: unknown): string => encodeContent(ContentFormat.TLV, P('/40000/0/77'), v, m).toString('hex');
      assert.equal(enc(1000), 'c24d03e8'); // smallest integer length
      assert.equal(enc(-5), 'c14dfb');
      assert.equal(enc(1.5), 'c84d083ff8000000000000'); // non-integer: float64
      assert.equal(enc('ab'), 'c24d6162');
      assert.equal(enc(true), 'c14d01');
      assert.equal(enc(Buffer.from([9])), 'c14d09');
      assert.equal(enc({ objectId: 1, instanceId: 2 }), 'c44d00010002');
    });
  });

  describe('errors', () => {
    it('refuses values that do not fit the Resource type, saying which', () => {
      const e = (path: string, v: unknown, re: RegExp): void => {
        assert.throws(() => encodeContent(ContentFormat.TLV, P(path), v, model), isContentError(re));
      };
      e('/3/0/9', 'full', /\/3\/0\/9 \(Integer\): "full" does not fit Integer/);
      e('/3/0/9', 1.5, /does not fit Integer: expected an integer/);
      e('/3/0/9', 2n ** 63n, /out of range for Integer/);
      e('/3/0/9', 2 ** 60, /beyond 2\^53/);
      e('/1/0/6', 'maybe', /does not fit Boolean/);
      e('/3/0/13', 'yesterday', /does not fit Time/);
      e('/3/0/4', 1, /executable/);
      e('/3/0/6', 1, /multiple-instance; give its instances/);
      e('/3/0/9', [1, 2], /single-instance; give one value/);
      e('/3/0', 5, /expected an object keyed by path or Resource ID/);
      e('/3/0', { '/4/0/1': 1 }, /key \/4\/0\/1 is not below \/3\/0/);
      e('/3/0', { abc: 1 }, /neither a full path/);
      e('/3/0', {}, /no value given/);
      e('/3/0/1', null, /null does not fit String/);
      e('/', { '/3/0/1': 'x' }, /TLV cannot carry a composite write/);
    });

    it('refuses a truncated TLV', () => {
      // Every cut that does not fall on an entry boundary must be refused.
      const boundaries = new Set<number>();
      let offset = 0;
      for (const entry of readTlv(DEVICE_TLV)) boundaries.add((offset += writeTlv([entry]).length));
      assert.equal(offset, DEVICE_TLV.length);
      let refused = 0;
      for (let len = 1; len < DEVICE_TLV.length; len++) {
        if (boundaries.has(len)) continue;
        refused++;
        assert.throws(() => decodeContent(ContentFormat.TLV, DEVICE_TLV.subarray(0, len), P('/3/0'), model), isContentError(/truncated TLV/));
      }
      assert.equal(refused, DEVICE_TLV.length - 1 - (boundaries.size - 1));
      assert.throws(() => decodeContent(ContentFormat.TLV, hex('C8 00 14 4F 70'), P('/3/0/0'), model), isContentError(/declares 20 value bytes, 2 left/));
      assert.throws(() => decodeContent(ContentFormat.TLV, hex('E1 16'), P('/3303/0'), model), isContentError(/header at byte 0/));
      assert.throws(() => decodeContent(ContentFormat.TLV, hex('D0 01 00'), P('/3/0'), model), isContentError(/truncated TLV/));
    });

    it('refuses a wrong length for the Resource type', () => {
      const e = (path: string, bytes: string, re: RegExp): void => {
        assert.throws(() => decodeContent(ContentFormat.TLV, hex(bytes), P(path), model), isContentError(re));
      };
      e('/3/0/9', 'C3 09 00 00 64', /\/3\/0\/9: Integer value must be 1, 2, 4 or 8 bytes in TLV, got 3/);
      e('/3/0/9', 'C0 09', /got 0/);
      e('/3303/0/5700', 'E2 16 44 00 00', /Float value must be 4 or 8 bytes in TLV, got 2/);
      e('/1/0/6', 'C2 06 00 01', /Boolean value must be 1 byte/);
      e('/1/0/6', 'C1 06 02', /Boolean value must be 0 or 1, got 2/);
      e('/0/0/17', 'C3 11 00 00 00', /Objlnk value must be 4 bytes/);
    });

    it('refuses structures that do not answer the request', () => {
      const e = (path: string, bytes: string, re: RegExp): void => {
        assert.throws(() => decodeContent(ContentFormat.TLV, hex(bytes), P(path), model), isContentError(re));
      };
      e('/3/0/9', 'C1 0A 0F', /got Resource 10/);
      e('/3/0', '08 01 03 C1 09 64', /got Object Instance 1/);
      e('/3/0', '41 00 01', /expected a Resource, got Resource Instance 0/);
      e('/3/0', 'C1 09 64 C1 09 65', /\/3\/0\/9 appears twice/);
      e('/3/0/9', 'C1 09 64 C1 09 65', /expected one Resource, got 2 entries/);
      e('/3/0', '08 00 03 08 00 00', /Object Instance 0 at byte 3 inside an Object Instance/);
      e('/3/0/6', '86 06 C1 00 01 41 01 05', /Resource 0 at byte 2 inside a Multiple Resource/);
      e('/3303', 'E4 16 44 41 BC 00 00', /Resources without an Object Instance/);
      e('/', 'C1 00 01', /at least an Object ID/);
    });

    it('never throws anything but Lwm2mContentError on random garbage', () => {
      let seed = 12345;
      const rand = (): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed;
      };
      const paths: Lwm2mPath[] = [P('/3'), P('/3/0'), P('/3/0/6'), P('/3/0/6/1'), P('/3303/0/5700'), P('/31024/1')];
      const formats = [ContentFormat.TLV, ContentFormat.TEXT, ContentFormat.SENML_JSON, ContentFormat.OPAQUE, ContentFormat.LINK];
      let decoded = 0;
      for (let i = 0; i < 3000; i++) {
        const len = rand() % 40;
        const buf = Buffer.alloc(len);
        for (let j = 0; j < len; j++) buf[j] = rand() & 0xff;
        // Mutations of a valid payload reach deeper than pure noise.
        const mutated = Buffer.from(DEVICE_TLV);
        mutated[rand() % mutated.length] = rand() & 0xff;
        for (const payload of [buf, mutated]) {
          for (const fmt of formats) {
            const path = paths[rand() % paths.length] as Lwm2mPath;
            try {
              decodeContent(fmt, payload, path, model);
              decoded++;
            } catch (e) {
              assert.ok(e instanceof Lwm2mContentError, `format ${fmt} path ${JSON.stringify(path)}: ${String(e)}`);
              // A cause means an internal error was caught by the safety net: a bug, not a refusal.
              assert.equal((e as Error).cause, undefined, `format ${fmt} path ${JSON.stringify(path)}: ${(e as Error).message}`);
              assert.ok((e as Error).message.length > 0);
            }
          }
        }
      }
      assert.ok(decoded > 0);
    });
  });
});

describe('text/plain (0) and opaque (42)', () => {
  const m = new ObjectModel([
    obj(40000, [res(0, 'String'), res(1, 'Integer'), res(2, 'Unsigned Integer'), res(3, 'Float'), res(4, 'Boolean'), res(5, 'Opaque'), res(6, 'Time'), res(7, 'Objlnk'), res(8, 'Corelnk')]),
  ]);
  const cases: Array<[number, unknown, string]> = [
    [0, 'Open Mobile Alliance', 'Open Mobile Alliance'],
    [1, -42, '-42'],
    [1, 9223372036854775807n, '9223372036854775807'],
    [2, 42, '42'],
    [3, 23.5, '23.5'],
    [4, true, '1'],
    [4, false, '0'],
    [5, Buffer.from([1, 2, 3, 0xfe]), 'AQID/g=='],
    [6, new Date(1367491215000), '1367491215'],
    [7, { objectId: 3, instanceId: 0 }, '3:0'],
    [8, '</3/0>;ver=1.2', '</3/0>;ver=1.2'],
  ];
  for (const [rid, value, text] of cases) {
    it(`round-trips resource ${rid} as ${JSON.stringify(text)}`, () => {
      const path = P(`/40000/0/${rid}`);
      const out = encodeContent(ContentFormat.TEXT, path, value, m);
      assert.equal(out.toString('utf8'), text);
      assert.deepEqual(unwrapSingle(decodeContent(ContentFormat.TEXT, out, path, m), path), value);
    });
  }

  it('reads unknown Resources as strings, and true/false as Booleans', () => {
    assert.deepEqual(decodeContent(ContentFormat.TEXT, Buffer.from('42'), P('/40000/0/99'), m), { '/40000/0/99': '42' });
    assert.deepEqual(decodeContent(ContentFormat.TEXT, Buffer.from('true'), P('/40000/0/4'), m), { '/40000/0/4': true });
  });

  it('refuses text that does not fit the type', () => {
    const e = (rid: number, s: string, re: RegExp): void => {
      assert.throws(() => decodeContent(ContentFormat.TEXT, Buffer.from(s), P(`/40000/0/${rid}`), m), isContentError(re));
    };
    e(1, '12abc', /"12abc" is not a valid Integer/);
    e(1, '99999999999999999999', /is not a valid Integer/);
    e(2, '-1', /not a valid Unsigned Integer/);
    e(3, '1,5', /not a valid Float/);
    e(4, '2', /not a valid Boolean \(1 or 0\)/);
    e(5, '***', /not valid base64/);
    e(6, 'soon', /not a valid Time/);
    e(7, '3', /not a valid Objlnk/);
  });

  it('refuses text on a path that is not a Resource', () => {
    assert.throws(() => decodeContent(ContentFormat.TEXT, Buffer.from('x'), P('/3/0'), model), isContentError(/not a Resource/));
    assert.throws(() => encodeContent(ContentFormat.TEXT, P('/3/0/0'), { a: 1 }, model), isContentError(/one value/));
  });

  it('carries opaque bytes as they are', () => {
    const bytes = Buffer.from([0, 0xff, 0x10]);
    const v = decodeContent(ContentFormat.OPAQUE, bytes, P('/5/0/0'), model);
    assert.deepEqual(v, { '/5/0/0': bytes });
    assert.notEqual(v['/5/0/0'], bytes, 'a copy, not a view of the datagram');
    assert.deepEqual(encodeContent(ContentFormat.OPAQUE, P('/5/0/0'), bytes, model), bytes);
    assert.deepEqual(encodeContent(ContentFormat.OPAQUE, P('/5/0/0'), 'hi', model), Buffer.from('hi'));
    assert.throws(() => encodeContent(ContentFormat.OPAQUE, P('/5/0/0'), 5, model), isContentError(/does not fit Opaque/));
  });
});

describe('SenML JSON (110)', () => {
  /** Read /3/0 in SenML JSON as in the LwM2M 1.1 TS example (base name + relative names). */
  const DEVICE_SENML = `[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},
    {"n":"1","vs":"Lightweight M2M Client"},
    {"n":"2","vs":"345000123"},
    {"n":"3","vs":"1.0"},
    {"n":"6/0","v":1},
    {"n":"6/1","v":5},
    {"n":"7/0","v":3800},
    {"n":"7/1","v":5000},
    {"n":"8/0","v":125},
    {"n":"8/1","v":900},
    {"n":"9","v":100},
    {"n":"10","v":15},
    {"n":"11/0","v":0},
    {"n":"13","v":1367491215},
    {"n":"14","vs":"+02:00"},
    {"n":"16","vs":"U"}]`;

  it('decodes a multi-resource read with a base name', () => {
    assert.deepEqual(decodeContent(ContentFormat.SENML_JSON, Buffer.from(DEVICE_SENML), P('/3/0'), model), DEVICE_VALUES);
  });

  it('decodes the RFC 8428 §5.1.5 example (every value kind: v, vs, vb, vd) as printed in the RFC', () => {
    const rfc = `[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]`;
    const bn = 'urn:dev:ow:10e2073a01080063:';
    assert.deepEqual(decodeSenmlJsonRecords(Buffer.from(rfc)), [
      { name: `${bn}temp`, kind: 'v', value: 23.1 },
      { name: `${bn}label`, kind: 'vs', value: 'Machine Room' },
      { name: `${bn}open`, kind: 'vb', value: false },
      { name: `${bn}nfv-reader`, kind: 'vd', value: Buffer.from('hi \n') },
    ]);
  });

  it('encodes the Device values in the same form', () => {
    const out = encodeContent(ContentFormat.SENML_JSON, P('/3/0'), DEVICE_VALUES, model).toString();
    assert.deepEqual(JSON.parse(out), JSON.parse(DEVICE_SENML));
  });

  it('decodes every value kind, typed by the model', () => {
    const payload = JSON.stringify([
      { bn: '/40000/0/', n: '0', vs: 'x' },
      { n: '1', v: -7 },
      { n: '3', v: 1.25 },
      { n: '4', vb: true },
      { n: '5', vd: 'AQID_g' },
      { n: '6', v: 1367491215 },
      { n: '7', vlo: '3:0' },
      { n: '9/2', v: 3 },
    ]);
    const m = new ObjectModel([
      obj(40000, [res(0, 'String'), res(1, 'Integer'), res(3, 'Float'), res(4, 'Boolean'), res(5, 'Opaque'), res(6, 'Time'), res(7, 'Objlnk'), res(9, 'Integer', true)]),
    ]);
    assert.deepEqual(decodeContent(ContentFormat.SENML_JSON, Buffer.from(payload), P('/40000/0'), m), {
      '/40000/0/0': 'x',
      '/40000/0/1': -7,
      '/40000/0/3': 1.25,
      '/40000/0/4': true,
      '/40000/0/5': Buffer.from([1, 2, 3, 0xfe]),
      '/40000/0/6': new Date(1367491215000),
      '/40000/0/7': { objectId: 3, instanceId: 0 },
      '/40000/0/9/2': 3,
    });
  });

  it('round-trips every type', () => {
    const m = new ObjectModel([
      obj(40000, [res(0, 'String'), res(1, 'Integer'), res(3, 'Float'), res(4, 'Boolean'), res(5, 'Opaque'), res(6, 'Time'), res(7, 'Objlnk'), res(9, 'Integer', true)]),
    ]);
    const values = {
      '/40000/0/0': 'x"y',
      '/40000/0/1': 9223372036854775807n,
      '/40000/0/3': 0.1,
      '/40000/0/4': false,
      '/40000/0/5': Buffer.from([0xfb, 0xff]),
      '/40000/0/6': new Date(1367491215000),
      '/40000/0/7': { objectId: 65535, instanceId: 65535 },
      '/40000/0/9/2': 3,
    };
    const out = encodeContent(ContentFormat.SENML_JSON, P('/40000/0'), values, m);
    assert.match(out.toString(), /"v":9223372036854775807[,}]/, 'a bigint is written as exact digits');
    assert.match(out.toString(), /"vd":"-_8"/, 'opaque as base64url without padding');
    const back = decodeContent(ContentFormat.SENML_JSON, out, P('/40000/0'), m);
    // JSON numbers are doubles: the bigint comes back rounded, everything else exact.
    assert.deepEqual({ ...back, '/40000/0/1': 0 }, { ...values, '/40000/0/1': 0 });
  });

  it('writes a single Resource with its full name and a composite write with full names', () => {
    assert.equal(encodeContent(ContentFormat.SENML_JSON, P('/1/0/1'), 600, model).toString(), '[{"n":"/1/0/1","v":600}]');
    assert.equal(
      encodeContent(ContentFormat.SENML_JSON, P('/'), { '/1/0/1': 600, '/3/0/14': '+01:00' }, model).toString(),
      '[{"n":"/1/0/1","v":600},{"n":"/3/0/14","vs":"+01:00"}]',
    );
    assert.equal(encodeCompositePaths(ContentFormat.SENML_JSON, [P('/3/0/1'), P('/1/0')]).toString(), '[{"n":"/3/0/1"},{"n":"/1/0"}]');
  });

  it('resolves base time and keeps the latest record of a time series', () => {
    const payload = JSON.stringify([
      { bn: '/3303/0/5700', bt: 1700000000, t: -10, v: 20.5 },
      { t: 0, v: 21.5 },
      { t: -5, v: 21.0 },
    ]);
    const records = decodeSenmlJsonRecords(Buffer.from(payload));
    assert.deepEqual(records.map((r) => r.time), [1699999990, 1700000000, 1699999995]);
    assert.deepEqual(decodeContent(ContentFormat.SENML_JSON, Buffer.from(payload), P('/3303/0/5700'), model), { '/3303/0/5700': 21.5 });
  });

  it('keeps a value whose SenML kind does not match the model type as sent', () => {
    const v = decodeContent(ContentFormat.SENML_JSON, Buffer.from('[{"n":"/3/0/9","vs":"100"}]'), P('/3/0/9'), model);
    assert.deepEqual(v, { '/3/0/9': '100' });
  });

  it('refuses bad JSON and bad SenML with Lwm2mContentError', () => {
    const e = (payload: string, re: RegExp): void => {
      assert.throws(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from(payload), P('/3/0'), model), isContentError(re));
    };
    e('[{"n":"/3/0/0","vs":"x"', /invalid SenML JSON/);
    e('{"n":"/3/0/0"}', /expected an array of records/);
    e('[42]', /record 0 is not an object/);
    e('[{"n":"/3/0/9","v":"100"}]', /v must be a number/);
    e('[{"n":"/3/0/9","v":1,"vs":"1"}]', /more than one value field/);
    e('[{"n":"/3/x/9","v":1}]', /is not an LwM2M path/);
    e('[{"n":"/3/0","v":1}]', /does not name a Resource/);
    e('[{"n":"/3/0/5","vd":"!!"}]', /not valid base64/);
    e('[{"n":"/3/0/5","vlo":"3-0"}]', /vlo "3-0" is not objectId:instanceId/);
    e('[{"n":"/3/0/9","v":1,"x_":1}]', /must be understood/);
    e('[{"v":1}]', /no name/);
    e('[{"bn":"/3/0","n":"1","vs":"x"}]', /"\/3\/01" is not an LwM2M path.*leading zero/);
  });

  it('refuses writes SenML cannot express', () => {
    assert.throws(() => encodeContent(ContentFormat.SENML_JSON, P('/31024'), { '1': 42 }, model), isContentError(/give the instance/));
    assert.throws(() => encodeContent(ContentFormat.SENML_JSON, P('/3303/0/5700'), NaN, model), isContentError(/cannot be sent in SenML JSON/));
  });
});

describe('link-format (40)', () => {
  it('parses a real registration payload', () => {
    const links = parseLinkFormat('</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</3303/0>,</3303/1>');
    assert.deepEqual(links, [
      { uri: '/', attributes: { rt: 'oma.lwm2m', ct: '110' } },
      { uri: '/1', attributes: { ver: '1.1' } },
      { uri: '/1/0', attributes: {} },
      { uri: '/3/0', attributes: {} },
      { uri: '/3303/0', attributes: {} },
      { uri: '/3303/1', attributes: {} },
    ]);
  });

  it('keeps commas, semicolons and escaped quotes inside quoted values', () => {
    const links = parseLinkFormat('</a>;title="x, y; \\"z\\"";obs;rt=core.s, </b>;if="a,b"');
    assert.deepEqual(links, [
      { uri: '/a', attributes: { title: 'x, y; "z"', obs: true, rt: 'core.s' } },
      { uri: '/b', attributes: { if: 'a,b' } },
    ]);
  });

  it('parses a Discover answer with attributes and an empty payload', () => {
    const links = parseLinkFormat('</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/6>;dim=2,</3/0/7>;gt=50;lt=42.2');
    assert.deepEqual(links[2], { uri: '/3/0/6', attributes: { dim: '2' } });
    assert.deepEqual(links[3]?.attributes, { gt: '50', lt: '42.2' });
    assert.deepEqual(parseLinkFormat(''), []);
    assert.deepEqual(decodeContent(ContentFormat.LINK, Buffer.from('</3/0/1>'), P('/3/0'), model), { '/3/0': '</3/0/1>' });
  });

  it('keeps a parameter named __proto__ as a plain key', () => {
    const [link] = parseLinkFormat('</a>;__proto__=1');
    assert.equal(Object.getPrototypeOf(link?.attributes), Object.prototype);
    assert.equal(link?.attributes['__proto__'], '1');
  });

  it('refuses malformed link-format', () => {
    assert.throws(() => parseLinkFormat('/1/0'), isContentError(/expected '<'/));
    assert.throws(() => parseLinkFormat('</1/0'), isContentError(/missing '>'/));
    assert.throws(() => parseLinkFormat('</1>;rt="abc'), isContentError(/unterminated quoted value of rt/));
    assert.throws(() => parseLinkFormat('</1> </2>'), isContentError(/expected ',' or ';'/));
    assert.throws(() => parseLinkFormat('</1>;=5'), isContentError(/parameter without a name/));
  });
});

describe('decodeContent / encodeContent / unwrapSingle', () => {
  it('unwraps a single Resource and keeps larger results keyed by path', () => {
    assert.equal(unwrapSingle({ '/3/0/9': 100 }, P('/3/0/9')), 100);
    assert.deepEqual(unwrapSingle({ '/3/0/6/0': 1, '/3/0/6/1': 5 }, P('/3/0/6')), { '/3/0/6/0': 1, '/3/0/6/1': 5 });
    assert.deepEqual(unwrapSingle({ '/3/0/9': 100 }, P('/3/0')), { '/3/0/9': 100 });
    assert.deepEqual(unwrapSingle({}, P('/3/0/9')), {});
  });

  it('refuses unknown formats', () => {
    assert.throws(() => decodeContent(1234, Buffer.alloc(1), P('/3/0'), model), isContentError(/unknown content format 1234/));
    assert.throws(() => encodeContent(1234, P('/3/0/1'), 'x', model), isContentError(/unknown content format 1234/));
  });

  it('accepts the pre-registration TLV number 1542', () => {
    assert.deepEqual(decodeContent(1542, hex('C1 09 64'), P('/3/0/9'), model), { '/3/0/9': 100 });
  });

  it('refuses a bad path or payload with Lwm2mContentError', () => {
    assert.throws(() => decodeContent(ContentFormat.TLV, hex('C1 09 64'), { objectId: 3, resourceId: 9 }, model), isContentError(/Object Instance ID is missing/));
    assert.throws(() => decodeContent(ContentFormat.TLV, 'C10964' as unknown as Buffer, P('/3/0/9'), model), isContentError(/payload must be a Buffer/));
  });
});
