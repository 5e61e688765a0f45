#!/usr/bin/env node
/*
 * Generates src/lwm2m/model/core-objects.json, the Object definitions shipped with the package, from the OMA
 * LwM2M registry DDF files (https://github.com/OpenMobileAlliance/lwm2m-registry).
 *
 * Usage:  node scripts/gen-objects.js <registry-folder> [output.json]
 *
 * To regenerate the shipped definitions (e.g. after the registry publishes a new Object version):
 *
 *   1. git clone --depth 1 https://github.com/OpenMobileAlliance/lwm2m-registry.git <registry-folder>
 *      (its top-level <id>.xml files are the latest version of each Object; older versions live in
 *      version_history/ and are not read)
 *   2. node scripts/gen-objects.js <registry-folder>
 *   3. LWM2M_REGISTRY=<registry-folder> npx mocha test/model.test.ts
 *      (checks the shipped JSON equals a fresh run, and the core set is complete)
 *   4. review the diff of src/lwm2m/model/core-objects.json: a changed type or operation changes how values are
 *      decoded and which writes are refused.
 *
 * The shipped set: OMA Objects 0–7, 9, 10, 19, 21 and every IPSO Object 3300–3399 present in the folder. The
 * script stops when one of the OMA core Objects is missing. Object versions are whatever the registry's
 * top-level files hold (at the last generation: 0 v1.2, 1 v1.2, 2 v1.1, 3 v1.2, 4 v1.3, 5 v1.2, 6 v1.0, 7 v1.0,
 * 9 v1.0, 10 v1.1, 19 v1.0, 21 v2.0, IPSO 33xx v1.0–2.0). Users load other Objects (or other versions) at run
 * time from a folder of DDF files (ObjectModel.loadDirectory); a loaded Object replaces the shipped one.
 * The DDF files are read with the package's own DDF reader (src/lwm2m/model/ddf.ts, loaded through tsx, a
 * dev dependency), so the shipped JSON and run-time DDF loading always agree. Descriptions and
 * range/enumeration texts are left out to keep the package small.
 */
'use strict';

const fs = require('fs');
const path = require('path');

require('tsx/cjs');
const { parseDdf } = require('../src/lwm2m/model/ddf.ts');
const { toCompact, COMPACT_FORMAT, COMPACT_RESOURCE_FIELDS } = require('../src/lwm2m/model/compact.ts');

const CORE_IDS = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 19, 21];
const isIpso = (id) => id >= 3300 && id <= 3399;

function main(argv) {
  const registry = argv[2];
  const output = argv[3] || path.join(__dirname, '..', 'src', 'lwm2m', 'model', 'core-objects.json');
  if (!registry) {
    process.stderr.write('usage: node scripts/gen-objects.js <lwm2m-registry folder> [output.json]\n');
    return 2;
  }
  const ids = fs
    .readdirSync(registry)
    .map((f) => /^(\d+)\.xml$/.exec(f))
    .filter(Boolean)
    .map((m) => Number(m[1]))
    .filter((id) => CORE_IDS.includes(id) || isIpso(id))
    .sort((a, b) => a - b);
  const missing = CORE_IDS.filter((id) => !ids.includes(id));
  if (missing.length) {
    process.stderr.write(`registry folder lacks core objects: ${missing.join(', ')}\n`);
    return 1;
  }
  const objects = [];
  for (const id of ids) {
    const defs = parseDdf(fs.readFileSync(path.join(registry, `${id}.xml`), 'utf8'));
    const def = defs.find((d) => d.id === id);
    if (!def) throw new Error(`${id}.xml does not define Object ${id}`);
    objects.push(toCompact(def));
  }
  // One Object per block, one Resource per line: small, and readable in a diff.
  const lines = [];
  lines.push('{');
  lines.push(`  "format": ${JSON.stringify(COMPACT_FORMAT)},`);
  lines.push(`  "resourceFields": ${JSON.stringify(COMPACT_RESOURCE_FIELDS)},`);
  lines.push('  "objects": [');
  objects.forEach((o, i) => {
    const { resources, ...head } = o;
    const headJson = JSON.stringify(head);
    lines.push(`    ${headJson.slice(0, -1)},"resources":[`);
    resources.forEach((r, j) => lines.push(`      ${JSON.stringify(r)}${j < resources.length - 1 ? ',' : ''}`));
    lines.push(`    ]}${i < objects.length - 1 ? ',' : ''}`);
  });
  lines.push('  ]');
  lines.push('}');
  fs.writeFileSync(output, lines.join('\n') + '\n');
  process.stdout.write(`wrote ${objects.length} objects to ${path.relative(process.cwd(), output)}\n`);
  return 0;
}

process.exitCode = main(process.argv);
