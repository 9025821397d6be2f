/**
 * A weights file that changes while the engine loads it (issue 13, item 7): truncated, replaced by a
 * rename, or grown. Each case runs in a child process (a crash must not take the test runner with it);
 * the child starts a load of a MiniLM-L6-shaped model and changes the file itself, from its JS thread,
 * while the engine's native thread reads it. The child must exit normally, having printed either a
 * typed E_BAD_WEIGHTS or a load whose score is the one a load of an unchanged file gives (one
 * consistent file, never a mix). When weights were read through a mapping, truncating killed the
 * child with SIGBUS.
 *
 * Determinism: the moments are fractions of a load measured here on the same file, so some fall inside
 * the load on any machine; the test checks that at least one change did land before its load settled.
 */
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSpec } from '../src/model';
import { native, packageRoot } from '../src/native';
import { synthesizeModel } from '../src/synth';
import type { ModelSpec } from '../src/types';

const dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-weights-truncate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PAIR = { tokens: [101, 2054, 2003, 102, 1037, 3899, 102], typeIds: [0, 0, 0, 0, 1, 1, 1] };

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
  logit?: number;
  /** Whether the change was made before the load settled. */
  changedDuringLoad: boolean;
}

type Change =
  | { kind: 'truncate'; size: number }
  | { kind: 'replace'; from: string }
  | { kind: 'grow'; bytes: number };

// The child: start the load, change the file after `delayMs`, print one JSON line, exit.
const CHILD = `
const fs = require('node:fs');
const [root, file, spec, change, delayMs, pair] = JSON.parse(process.argv[1]);
const addon = require(require.resolve('node-gyp-build', { paths: [root] }))(root);
let settled = false;
let changed = false;
const done = (o) => { settled = true; process.stdout.write(JSON.stringify({ ...o, changedDuringLoad: changed }) + '\\n'); };
setTimeout(() => {
  changed = !settled;
  if (change.kind === 'truncate') fs.truncateSync(file, change.size);
  else if (change.kind === 'replace') fs.renameSync(change.from, file);
  else fs.appendFileSync(file, Buffer.alloc(change.bytes, 7));
}, delayMs);
addon.loadEngine({ backend: 'cpu', device: 'auto', weights: [file], spec, threads: 1 }).then(
  async (e) => {
    const n = pair.tokens.length;
    const r = await e.forward(Int32Array.from(pair.tokens), Int32Array.from(pair.typeIds), Int32Array.from([0, n]));
    await e.dispose();
    done({ ok: true, logit: r.logits[0] });
  },
  (err) => done({ ok: false, code: err.code, message: err.message }),
);
`;

function runChild(file: string, spec: ModelSpec, change: Change, delayMs: number) {
  return new Promise<{ outcome: Outcome | undefined; status: number | null; signal: string | null }>(
    (resolve, reject) => {
      const args = JSON.stringify([packageRoot(), file, spec, change, delayMs, PAIR]);
      const child = spawn(process.execPath, ['-e', CHILD, args], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.on('error', reject);
      child.on('close', (status, signal) => {
        const line = out.trim().split('\n').pop();
        resolve({ outcome: line ? (JSON.parse(line) as Outcome) : undefined, status, signal });
      });
    },
  );
}

let source = '';
let spec: ModelSpec;
let other = ''; // the same model with another classifier bias: what a replacement brings
let loadMs = 0;
let logitA = 0;
let logitB = 0;

async function loadAndScore(file: string): Promise<{ ms: number; logit: number }> {
  const t0 = performance.now();
  const e = await native().loadEngine({ backend: 'cpu', device: 'auto', weights: [file], spec, threads: 1 });
  const ms = performance.now() - t0;
  const n = PAIR.tokens.length;
  const r = await e.forward(
    Int32Array.from(PAIR.tokens),
    Int32Array.from(PAIR.typeIds),
    Int32Array.from([0, n]),
  );
  await e.dispose();
  return { ms, logit: r.logits[0] as number };
}

/** A copy of `file` whose classifier bias is `bias`: same size and header, another score. */
function withBias(file: string, to: string, bias: number): void {
  copyFileSync(file, to);
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { data_offsets: [number, number] }
  >;
  const entry = header['classifier.bias'] ?? header['bert.classifier.bias'];
  if (!entry) throw new Error('no classifier.bias in the synthetic model');
  const fd = openSync(to, 'r+');
  writeSync(fd, Buffer.from(new Float32Array([bias]).buffer), 0, 4, 8 + n + entry.data_offsets[0]);
  closeSync(fd);
}

beforeAll(async () => {
  const a = await synthesizeModel({ shape: 'minilm-l6', outDir: join(dir, 'a') });
  source = a.weights[0] as string;
  spec = await loadModelSpec(a);
  other = join(dir, 'b.safetensors');
  withBias(source, other, 5);
  logitB = (await loadAndScore(other)).logit;
  ({ ms: loadMs, logit: logitA } = await loadAndScore(source));
  expect(logitA).not.toBe(logitB);
}, 120_000);

let caseCount = 0;
async function attempt(change: (file: string) => Change, fraction: number): Promise<Outcome> {
  const file = join(dir, `w${caseCount++}.safetensors`);
  copyFileSync(source, file);
  const { outcome, status, signal } = await runChild(file, spec, change(file), Math.round(loadMs * fraction));
  expect({ status, signal }).toEqual({ status: 0, signal: null });
  if (!outcome) throw new Error('the child printed nothing');
  return outcome;
}

// Fractions of one load: the first ones land inside it even when a child loads faster than this process.
const MOMENTS = [0.05, 0.2, 0.4, 0.6, 0.85];

describe('a weights file that changes while it loads', () => {
  it('truncated at several moments: E_BAD_WEIGHTS or a full load of the original, never a signal', async () => {
    const outcomes: Outcome[] = [];
    for (const [i, fraction] of MOMENTS.entries()) {
      const size = [0, 1 << 20, 45_000_000][i % 3] as number; // nothing, the header and a little, half
      const o = await attempt(() => ({ kind: 'truncate', size }), fraction);
      if (o.ok) expect(o.logit).toBe(logitA);
      else {
        expect(o.code).toBe('E_BAD_WEIGHTS');
        expect(o.message).toMatch(/w\d+\.safetensors/);
      }
      outcomes.push(o);
    }
    expect(outcomes.some((o) => o.changedDuringLoad)).toBe(true);
  }, 60_000);

  it('replaced by a rename or grown: a consistent load (the old file or the new) or E_BAD_WEIGHTS', async () => {
    const outcomes: Outcome[] = [];
    for (const fraction of [0.1, 0.5]) {
      const replacement = join(dir, `r${caseCount}.safetensors`);
      copyFileSync(other, replacement);
      const replaced = await attempt(() => ({ kind: 'replace', from: replacement }), fraction);
      // The descriptor open keeps reading the file it validated; a rename before the open gives B.
      expect(replaced.ok).toBe(true);
      expect([logitA, logitB]).toContain(replaced.logit);
      const grown = await attempt(() => ({ kind: 'grow', bytes: 1 << 20 }), fraction);
      if (grown.ok) expect(grown.logit).toBe(logitA);
      else expect(grown.code).toBe('E_BAD_WEIGHTS');
      outcomes.push(replaced, grown);
    }
    expect(outcomes.some((o) => o.changedDuringLoad)).toBe(true);
  }, 60_000);
});
