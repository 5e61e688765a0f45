import { cpSync } from 'node:fs';
import { defineConfig } from 'tsup';

export default defineConfig([
  {
    // What Node-RED loads: one file registering the four node types.
    // clean: false so the hand-written editor HTML, locales and icons in nodes/ survive.
    entry: { lwm2m: 'src/nodes/index.ts' },
    outDir: 'nodes',
    format: ['cjs'],
    target: 'node18',
    platform: 'node',
    clean: false,
    sourcemap: false,
    splitting: false,
    dts: false,
    // Node-RED looks for icons only in an icons/ folder beside the node's .js file.
    onSuccess: async () => {
      cpSync('icons', 'nodes/icons', { recursive: true });
    },
  },
  {
    // The protocol core as a library, usable without Node-RED.
    entry: { index: 'src/index.ts' },
    outDir: 'dist',
    format: ['cjs'],
    target: 'node18',
    platform: 'node',
    clean: true,
    sourcemap: true,
    dts: true,
  },
]);
