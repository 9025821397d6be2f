/**
 * `npm run prebuildify` produces a prebuild that works on its own: a copy of the package holding only
 * package.json and prebuilds/ (no build/, no sources, no compiler on PATH) loads the addon through
 * node-gyp-build and scores a golden fixture pair. The prebuild is made in a staged copy of the packed
 * sources, so the checkout's build/ and prebuilds/ stay as they were.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { packageRoot } from '../src/native';
import { fixtureExpected, fixtureSpec } from './helpers/cpu-model';
import { nodeGypEnv, stagePackage } from './helpers/package-stage';

const root = packageRoot();
const tmp = mkdtempSync(join(tmpdir(), 'mlx-rerank-prebuild-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it('a package with only the prebuild (no build/, no compiler) loads and runs a forward', () => {
  const staged = stagePackage(join(tmp, 'stage'));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['run', 'prebuildify'], { cwd: staged, stdio: 'pipe', env: nodeGypEnv() });
  const platformDir = join(staged, 'prebuilds', `${process.platform}-${process.arch}`);
  expect(existsSync(platformDir)).toBe(true);

  const pkg = join(tmp, 'pkg');
  mkdirSync(pkg);
  cpSync(join(staged, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(staged, 'prebuilds'), join(pkg, 'prebuilds'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  expect(existsSync(join(pkg, 'build'))).toBe(false);

  // PATH holds node and nothing else: no cc, c++, make, python.
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));

  const fixture = join(root, 'test', 'fixtures', 'models', 'tiny-l2-h64');
  const expected = fixtureExpected(fixture);
  const pair = expected.pairs[5] as { ids: number[]; typeIds: number[] };
  const spec = fixtureSpec(fixture);
  const script = `
    const { spawnSync } = require('node:child_process');
    const compiler = spawnSync('c++', ['--version']);
    const gyp = require('node-gyp-build');
    const addon = gyp(${JSON.stringify(pkg)});
    addon.loadEngine({ backend: 'cpu', device: 'auto', weights: [${JSON.stringify(join(fixture, 'float32', 'model.safetensors'))}], spec: ${JSON.stringify(spec)} })
      .then((e) => e.forward(Int32Array.from(${JSON.stringify(pair.ids)}), Int32Array.from(${JSON.stringify(pair.typeIds)}), Int32Array.from([0, ${pair.ids.length}]))
        .then((r) => e.dispose().then(() => r)))
      .then((r) => console.log(JSON.stringify({ path: gyp.resolve(${JSON.stringify(pkg)}), compiler: compiler.error ? compiler.error.code : 'found', logit: r.logits[0] })))
      .catch((err) => { console.error(err); process.exit(1); });
  `;
  const out = execFileSync(join(bin, 'node'), ['-e', script], {
    cwd: pkg,
    env: { PATH: bin, HOME: tmp },
    encoding: 'utf8',
  });
  const result = JSON.parse(out.trim().split('\n').at(-1) as string) as {
    path: string;
    compiler: string;
    logit: number;
  };
  expect(result.compiler).toBe('ENOENT');
  expect(result.path).toContain(join(pkg, 'prebuilds'));
  expect(Math.abs(result.logit - (expected.logits.float32[5]?.[0] as number))).toBeLessThanOrEqual(1e-4);
}, 600_000); // a full native build: minutes on a loaded 2-core machine
