#!/usr/bin/env node
/*
 * Generates src/lwm2m/model/core-objects.json, the Object definitions shipped with the package, from the OMA
 * LwM2M registry DDF files (https://github.com/OpenMobileAlliance/lwm2m-registry).
 *
 * Usage:  node scripts/gen-objects.js <registry-folder> [output.json]
 *
 * The shipped set: OMA Objects 0–7, 9, 10, 19, 21 and every IPSO Object 3300–3399 present in the folder.
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
