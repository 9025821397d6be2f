/**
 * The package as a new user meets it: installed (a staged copy of what `npm pack` ships, built with
 * the package's tsup config) into a consumer project. Its declarations type-check under TypeScript 5.x
 * and 7.x with default options, with and without @types/node; `require` and `import` give the same
 * objects (one implementation, so `instanceof MlxRerankError` holds across a mixed app).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native';
import { stagePackage } from './helpers/package-stage';

const root = packageRoot();
const tmp = mkdtempSync(join(tmpdir(), 'mlx-rerank-consumer-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// A consumer that never uses `await using` (the declarations alone must type-check), and one that does.
const CONSUMER = `import { CrossEncoder, MlxRerankError } from 'mlx-rerank';

export async function best(query: string, documents: string[]): Promise<string | undefined> {
  const ce = await CrossEncoder.load('cross-encoder/ms-marco-MiniLM-L-6-v2');
  try {
    const [top] = await ce.rank(query, documents, { topK: 1 });
    return top?.document;
  } catch (e) {
    if (e instanceof MlxRerankError) return e.message;
    throw e;
  } finally {
    await ce.dispose();
  }
}
`;

const COMPILERS = [
  { name: 'TypeScript 5', tsc: join(root, 'node_modules', 'typescript', 'bin', 'tsc'), major: '5' },
  { name: 'TypeScript 7', tsc: join(root, 'node_modules', 'typescript7', 'bin', 'tsc'), major: '7' },
];

let app = '';
let pkg = '';
beforeAll(() => {
  pkg = stagePackage(join(tmp, 'stage'), { dist: true });
  app = join(tmp, 'app');
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true });
  symlinkSync(pkg, join(app, 'node_modules', 'mlx-rerank'), 'dir');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true }));
  writeFileSync(join(app, 'plain.ts'), CONSUMER);
  writeFileSync(join(app, 'with-node.ts'), `/// <reference types="node" />\n${CONSUMER}`);
}, 300_000);

function tsc(compiler: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [compiler, '--noEmit', '--strict', ...args], {
    cwd: app,
    encoding: 'utf8',
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('the declarations type-check in a consumer project', () => {
  for (const c of COMPILERS) {
    it(`${c.name}, without and with @types/node`, () => {
      expect(execFileSync(process.execPath, [c.tsc, '--version'], { encoding: 'utf8' })).toMatch(
        new RegExp(`^Version ${c.major}\\.`),
      );
      // TypeScript 5's own default target (ES5) cannot type-check an async function at all; a Node
      // project names its module system, and `nodenext` is what resolves a package's `exports`.
      // TypeScript 7's defaults resolve `exports` as they are.
      const base = c.major === '5' ? ['--module', 'nodenext'] : [];
      const plain = tsc(c.tsc, [...base, 'plain.ts']);
      expect(plain.out).toBe('');
      expect(plain.status).toBe(0);
      rmSync(join(app, 'node_modules', '@types', 'node'), { force: true });
      symlinkSync(
        join(root, 'node_modules', '@types', 'node'),
        join(app, 'node_modules', '@types', 'node'),
        'dir',
      );
      try {
        const node = tsc(c.tsc, [...base, 'with-node.ts']);
        expect(node.out).toBe('');
        expect(node.status).toBe(0);
      } finally {
        rmSync(join(app, 'node_modules', '@types', 'node'), { force: true });
      }
    }, 300_000); // two whole-program type-checks: TypeScript 5 takes a while on a loaded 2-core machine
  }
});

describe('one implementation for require and import', () => {
  it('require("mlx-rerank") and import("mlx-rerank") give the same CrossEncoder and MlxRerankError', () => {
    const script = `
      const cjs = require('mlx-rerank');
      import('mlx-rerank').then((esm) => {
        const err = new esm.InputError('x');
        console.log(JSON.stringify({
          crossEncoder: typeof cjs.CrossEncoder === 'function' && cjs.CrossEncoder === esm.CrossEncoder,
          error: typeof cjs.MlxRerankError === 'function' && cjs.MlxRerankError === esm.MlxRerankError,
          instanceOf: err instanceof cjs.MlxRerankError,
          sameKeys: Object.keys(cjs).sort().join() === Object.keys(esm).sort().join(),
        }));
      });
    `;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ crossEncoder: true, error: true, instanceOf: true, sameKeys: true });
  });
});

/** The packages a built file imports statically, following its relative imports (the build's chunks). */
function staticImports(file: string, seen = new Set<string>()): Set<string> {
  const packages = new Set<string>();
  if (seen.has(file)) return packages;
  seen.add(file);
  // esbuild writes each static import as a statement of its own: `import x from "y";`, `import {\n a\n} from "y";`.
  for (const m of readFileSync(file, 'utf8').matchAll(/^import\s(?:[^;]*?\sfrom\s)?"([^"]+)";$/gms)) {
    const spec = m[1] as string;
    if (spec.startsWith('.')) for (const p of staticImports(join(dirname(file), spec), seen)) packages.add(p);
    else packages.add(spec);
  }
  return packages;
}

describe('the command line', () => {
  it('loads the HTTP server only for `serve`: --version imports neither fastify nor prom-client', () => {
    const cli = join(pkg, 'dist', 'cli.js');
    const eager = staticImports(cli);
    expect(eager).toContain('util'); // the argument parser: the walk sees the imports
    expect([...eager].filter((p) => /fastify|prom-client/.test(p))).toEqual([]);
    // ... and the server is in the build, behind the dynamic import.
    expect(readFileSync(cli, 'utf8')).toMatch(/import\("\.\/server-[\w-]+\.js"\)/);
    const version = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version as string;
    expect(execFileSync(process.execPath, [cli, '--version'], { encoding: 'utf8' })).toBe(`${version}\n`);
  });
});
