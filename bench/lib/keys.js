'use strict';
/** Deterministic benchmark credentials: device i has endpoint `bench-i`, identity `bench-i-id` and a 16-byte key. */
const { createHash } = require('node:crypto');

const endpoint = (i) => `bench-${i}`;
const identity = (i) => `bench-${i}-id`;
const key = (i) => createHash('sha256').update(`lwm2m-bench-key:${i}`).digest().subarray(0, 16);
const pskEntry = (i) => ({ endpoint: endpoint(i), identity: identity(i), key: key(i).toString('hex') });

module.exports = { endpoint, identity, key, pskEntry };
