import { defineConfig } from 'tsup';

// One TypeScript source, two module formats: dist/index.js (ESM) and dist/index.cjs (CommonJS),
// each with its own declaration file. `shims` gives the CJS build import.meta.url and the ESM build
// __dirname, which src/native.ts uses to find the package root (and so the addon).
export default defineConfig({
  entry: { index: 'src/index.ts', cli: 'src/cli.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts' } },
  target: 'node20',
  platform: 'node',
  shims: true,
  clean: true,
  sourcemap: true,
  splitting: false,
});
