/**
 * Checks of what callers pass in (options, arguments), in one place like sharp's lib/is.js: each throws
 * an InputError saying which option was wrong, what it got and what is accepted. Ranges are declared
 * next to each option's default (src/scheduler/limits.ts, src/api-input.ts) and listed in
 * docs/limits.md.
 */
import { readFile, stat } from 'node:fs/promises';
import { InputError } from './errors';

/** A numeric option's accepted values: [min, max], integers only unless `integer` is false. */
export interface Range {
  min: number;
  max: number;
  integer: boolean;
}

export const int = (min: number, max: number): Range => ({ min, max, integer: true });
export const real = (min: number, max: number): Range => ({ min, max, integer: false });

/** Longest delay Node's timers accept (2^31 - 1 ms); longer ones fire at once with a warning. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a value is, for messages: "null", "an array of length 3", "a string", "a number (NaN)". */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'number') return `the number ${String(v)}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** A non-null object that is not an array. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkNumber(name: string, v: unknown, r: Range): number {
  const ok = typeof v === 'number' && v >= r.min && v <= r.max && (!r.integer || Number.isInteger(v));
  if (!ok) {
    const kind = r.integer ? 'an integer' : 'a number';
    throw new InputError(`${name} must be ${kind} in [${r.min}, ${r.max}] (got ${describe(v)}).`);
  }
  return v as number;
}

export function checkOneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    throw new InputError(`${name} must be ${allowed.map((a) => `'${a}'`).join(', ')} (got ${describe(v)}).`);
  }
  return v as T;
}

export function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new InputError(`${name} must be true or false (got ${describe(v)}).`);
  return v;
}

export function checkString(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new InputError(`${name} must be a string (got ${describe(v)}).`);
  return v;
}

export function checkFunction<F>(name: string, v: unknown): F {
  if (typeof v !== 'function') throw new InputError(`${name} must be a function (got ${describe(v)}).`);
  return v as F;
}

export function checkSignal(name: string, v: unknown): AbortSignal {
  if (!(v instanceof AbortSignal)) {
    throw new InputError(`${name} must be an AbortSignal (got ${describe(v)}).`);
  }
  return v;
}

/**
 * Reads an options argument once: undefined gives {}, anything but an object is refused, and so is a
 * key that is not an option (naming the closest valid one, e.g. `topk` -> `topK`). Returns a copy of
 * the known keys whose value is not undefined, so later reads cannot see the caller change it; a getter
 * or Proxy that throws becomes an InputError.
 */
export function readOptions<T extends object>(
  where: string,
  o: unknown,
  known: { readonly [K in keyof T]-?: true },
): Partial<T> {
  if (o === undefined) return {};
  const out: Record<string, unknown> = {};
  try {
    if (!isObject(o)) throw new InputError(`${where} options must be an object (got ${describe(o)}).`);
    for (const key of Object.keys(o)) {
      if (!Object.hasOwn(known, key)) {
        const near = closest(key, Object.keys(known));
        throw new InputError(
          `Unknown ${where} option '${key}'${near ? `: did you mean '${near}'?` : '.'} Valid options: ${Object.keys(known).join(', ')}.`,
        );
      }
      const v = o[key];
      if (v !== undefined) out[key] = v;
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${where} options could not be read: ${String(err)}`, { cause: err });
  }
  return out as Partial<T>;
}

/** The candidate nearest to `name` (case-insensitive edit distance), when near enough to be a typo. */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** Levenshtein distance (insert, delete, substitute: cost 1 each). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(sub, (prev[j] as number) + 1, (cur[j - 1] as number) + 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/** An error class of src/errors.ts that takes (message, { cause }): what a file helper throws. */
export type FileErrorClass = new (message: string, options?: { cause?: unknown }) => Error;

/**
 * Reads a UTF-8 file of at most maxBytes (checked with stat first: an oversized file is refused before
 * it is read). A missing, unreadable or oversized file becomes an `ErrorClass` naming `what` and path.
 */
export async function readTextFile(
  path: string,
  what: string,
  maxBytes: number,
  ErrorClass: FileErrorClass,
): Promise<string> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new ErrorClass(`Cannot read ${what} at ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (size > maxBytes) {
    throw new ErrorClass(
      `${what} at ${path} is ${size} bytes, more than the ${maxBytes} it may have; the file is corrupt or not a ${what}.`,
    );
  }
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ErrorClass(`Cannot read ${what} at ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** readTextFile, then JSON.parse; invalid JSON is an `ErrorClass` too. */
export async function readJsonFile(
  path: string,
  what: string,
  maxBytes: number,
  ErrorClass: FileErrorClass,
): Promise<unknown> {
  const text = await readTextFile(path, what, maxBytes, ErrorClass);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ErrorClass(`${what} at ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

// Command-line flags (`mlx-rerank bench`, `serve`): the same checks on the strings `parseArgs` gives,
// with messages in the terms the user typed ("--batch takes ..., got "0"."). Exit code 2 follows from
// the InputError.

/** An integer flag in [min, max]; undefined when the flag was not given. */
export function flagInt(
  flag: string,
  v: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `${min}..${max}`;
    throw new InputError(`--${flag} takes ${range}, got "${v}".`);
  }
  return n;
}

/** A comma-separated list of positive integers ("8,32,128"); `dflt` when the flag was not given. */
export function flagInts(flag: string, v: string | undefined, dflt: number[]): number[] {
  if (v === undefined) return dflt;
  const out = v.split(',').map((s) => Number(s.trim()));
  if (v.trim() === '' || out.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new InputError(`--${flag} takes positive integers separated by commas, got "${v}".`);
  }
  return out;
}

/** One of `allowed`; undefined when the flag was not given. */
export function flagOneOf<T extends string>(flag: string, v: string, allowed: readonly T[]): T;
export function flagOneOf<T extends string>(
  flag: string,
  v: string | undefined,
  allowed: readonly T[],
): T | undefined;
export function flagOneOf<T extends string>(
  flag: string,
  v: string | undefined,
  allowed: readonly T[],
): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new InputError(`--${flag} takes one of ${allowed.join(', ')}, got "${v}".`);
  }
  return v as T;
}
