import { defineConfig } from 'tsup';

// One implementation, ES modules only: `import('mlx-rerank')` and `require('mlx-rerank')` (Node >= 20.19
// loads ES modules through require) give the same objects, so `instanceof MlxRerankError` holds across
// a mixed app. `shims` gives the build __dirname next to the import.meta.url src/native.ts uses.
//
// The declarations name `Symbol.asyncDispose` (CrossEncoder is AsyncDisposable). A consumer whose `lib`
// stops before it (TypeScript 7's default target, or any tsconfig without esnext) would fail inside our
// declarations (TS2550), so they pull in the one lib file that declares it, as @types/node does.
export default defineConfig({
  // The tokenizer worker is an entry of its own: src/tokenizer-pool.ts starts dist/tokenizer-worker.js,
  // next to whichever file of dist/ holds the pool.
  entry: { index: 'src/index.ts', cli: 'src/cli.ts', 'tokenizer-worker': 'src/tokenizer-worker.ts' },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts' }, banner: '/// <reference lib="esnext.disposable" />' },
  target: 'node20',
  platform: 'node',
  shims: true,
  clean: true,
  sourcemap: true,
  // Shared code goes to chunks that dist/index.js and dist/cli.js both import (still one copy of every
  // class), and `mlx-rerank serve`'s dynamic import of src/server stays a separate chunk: without
  // splitting, esbuild inlines it and dist/cli.js imports fastify and prom-client even for --version.
  splitting: true,
});
