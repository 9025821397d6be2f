/**
 * `mlx-rerank serve`'s flag parser (the real parseServe) for the load options beyond the scheduler's:
 * --tokenizer-threads and one flag per engine tuning option declared in src/engine-options.ts. The
 * flags are derived from the declaration, so every declared option is tried: what a flag gives must be
 * what the library's own LoadOptions.engine check makes of the same value, and a bad value is an
 * E_INPUT naming the flag.
 */
import { describe, expect, it } from 'vitest';
import { checkEngineTuning, ENGINE_OPTIONS } from '../src/engine-options';
import { InputError } from '../src/errors';
import { parseServe } from '../src/server/args';
import type { EngineTuning } from '../src/types';

type Key = keyof EngineTuning;
const keys = Object.keys(ENGINE_OPTIONS) as Key[];

const flagOf = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A value each kind accepts (as typed on the command line, and as the library takes it). */
function goodValue(k: Key): [string, string | number | boolean] {
  const kind = ENGINE_OPTIONS[k].kind;
  if ('oneOf' in kind) return [kind.oneOf.at(-1) as string, kind.oneOf.at(-1) as string];
  if ('boolean' in kind) return ['0', false];
  if ('folder' in kind) return ['/tmp/kernels', '/tmp/kernels'];
  return [String(kind.range.max), kind.range.max];
}

/** A value each kind refuses. */
function badValue(k: Key): string {
  const kind = ENGINE_OPTIONS[k].kind;
  if ('oneOf' in kind) return 'bogus';
  if ('boolean' in kind) return 'yes';
  if ('folder' in kind) return 'relative/dir';
  return String(kind.range.max + 1);
}

function serve(...flags: string[]) {
  return parseServe(['--model', 'synthetic:tiny', ...flags], {});
}

function inputError(fn: () => unknown): InputError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return err as InputError;
  }
  throw new Error('expected an InputError');
}

describe('serve flags for LoadOptions.tokenizerThreads and LoadOptions.engine', () => {
  it('leaves them unset when not given (the library defaults apply)', () => {
    const { load } = serve();
    expect(load.tokenizerThreads).toBeUndefined();
    expect(load.engine).toBeUndefined();
  });

  it('takes --early-batch-tokens 0..2^24 as the earlyBatchTokens limit, and refuses anything else naming it', () => {
    expect(serve().load.earlyBatchTokens).toBeUndefined();
    expect(serve('--early-batch-tokens', '0').load.earlyBatchTokens).toBe(0);
    expect(serve('--early-batch-tokens', '8192').load.earlyBatchTokens).toBe(8192);
    for (const bad of ['-1', '1.5', 'many', String(2 ** 24 + 1)]) {
      const err = inputError(() => serve(`--early-batch-tokens=${bad}`));
      expect(err.code).toBe('E_INPUT');
      expect(err.message).toContain('--early-batch-tokens');
    }
  });

  it('takes --engine-replicas 1..8 as LoadOptions.engineReplicas, and refuses anything else naming it', () => {
    expect(serve().load.engineReplicas).toBeUndefined();
    expect(serve('--engine-replicas', '2').load.engineReplicas).toBe(2);
    for (const bad of ['0', '9', '1.5', 'two']) {
      const err = inputError(() => serve(`--engine-replicas=${bad}`));
      expect(err.code).toBe('E_INPUT');
      expect(err.message).toContain('--engine-replicas');
    }
  });

  it('takes --tokenizer-threads 0..64', () => {
    expect(serve('--tokenizer-threads', '0').load.tokenizerThreads).toBe(0);
    expect(serve('--tokenizer-threads', '64').load.tokenizerThreads).toBe(64);
    for (const bad of ['65', '-1', '1.5', 'two', '']) {
      const err = inputError(() => serve(`--tokenizer-threads=${bad}`));
      expect(err.code).toBe('E_INPUT');
      expect(err.message).toContain('--tokenizer-threads takes 0..64');
    }
  });

  it('has a flag for every declared engine option, giving what LoadOptions.engine makes of it', () => {
    const flags = keys.flatMap((k) => [flagOf(k), goodValue(k)[0]]);
    const expected = checkEngineTuning(Object.fromEntries(keys.map((k) => [k, goodValue(k)[1]])));
    expect(serve(...flags).load.engine).toEqual(expected);
    expect(Object.keys(expected)).toHaveLength(keys.length);
    expect(serve('--row-buckets', 'true').load.engine).toEqual({ rowBuckets: true });
    expect(serve('--kernel-cache-dir', 'none').load.engine).toEqual({ kernelCacheDir: 'none' });
  });

  it('refuses a bad value of each with E_INPUT naming its flag', () => {
    for (const k of keys) {
      const err = inputError(() => serve(flagOf(k), badValue(k)));
      expect(err.code, k).toBe('E_INPUT');
      expect(err.message, k).toContain(`${flagOf(k)} takes`);
      expect(err.message, k).toContain(badValue(k));
    }
  });
});
