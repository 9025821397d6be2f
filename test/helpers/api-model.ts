/** Shared fixtures of the CrossEncoder tests: a synthetic model on disk and seeded text. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesizeModel } from '../../src/synth';
import type { ModelFiles } from '../../src/types';
import { rng } from './api-engine';

const made: string[] = [];

/** A synthetic model ('tiny' unless told) in a temporary folder, removed by `cleanupModels()`. */
export async function syntheticModel(
  shape: Parameters<typeof synthesizeModel>[0]['shape'] = 'tiny',
  seed = 1,
): Promise<ModelFiles> {
  const outDir = mkdtempSync(join(tmpdir(), 'api-model-'));
  made.push(outDir);
  return synthesizeModel({ shape, seed, outDir });
}

export function cleanupModels(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

const WORDS = (
  'the of and to in is was for on that with as by at from his it an were are which this be or has ' +
  'had not first one their its new after but who they have her she two been other when there all ' +
  'during into school time may years more most only over city some world would where later up such ' +
  'used many can state about national out known university united then made team american film ' +
  'cat dog river music water history population energy protein market court game season church'
).split(' ');

/** Seeded text of `min..max` words. */
export function words(r: () => number, min: number, max: number): string {
  const n = min + Math.floor(r() * (max - min + 1));
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(r() * WORDS.length)] as string);
  return out.join(' ');
}

/** Pairs whose lengths span short to longer than maxLength (so some are truncated). */
export function pairPool(seed: number, count: number, maxWords = 200): Array<[string, string]> {
  const r = rng(seed);
  return Array.from({ length: count }, () => [words(r, 1, 12), words(r, 0, r() < 0.1 ? maxWords : 60)]);
}

/** True when two Float32Arrays hold the same bits (NaN payloads and -0 included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
