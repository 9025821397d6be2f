/** Where the bench's pairs come from: the seeded MS MARCO-like generator, or the user's own file. */
import { readFileSync } from 'node:fs';
import { InputError } from '../errors';
import { msMarcoPairs } from '../workload';

import type { Pair } from './runner';

export type { Pair };

export interface Workload {
  pairs: Pair[];
  /** Words for the report header, e.g. "MS MARCO-like, seeded (seed 42)". */
  description: string;
}

/**
 * Reads query/document pairs from JSONL ({"query": ..., "document": ...} per line; "passage", "doc"
 * or "text" also accepted for the document) or TSV (query<TAB>document). Blank lines are skipped;
 * anything else malformed is an InputError naming the line.
 */
export function parsePairsText(text: string, source = 'pairs file'): Pair[] {
  const pairs: Pair[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    pairs.push(line.startsWith('{') ? parseJsonLine(line, source, i + 1) : parseTsvLine(line, source, i + 1));
  }
  if (pairs.length === 0) throw new InputError(`${source} holds no pairs: give JSONL or TSV lines.`);
  return pairs;
}

function parseJsonLine(line: string, source: string, lineNo: number): Pair {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch (err) {
    throw new InputError(`${source}:${lineNo} is not valid JSON (${(err as Error).message}).`);
  }
  const r = row as Record<string, unknown>;
  const doc = r.document ?? r.passage ?? r.doc ?? r.text;
  if (typeof r.query !== 'string' || typeof doc !== 'string') {
    throw new InputError(`${source}:${lineNo} needs string fields "query" and "document".`);
  }
  return [r.query, doc];
}

function parseTsvLine(line: string, source: string, lineNo: number): Pair {
  const tab = line.indexOf('\t');
  if (tab < 0) {
    throw new InputError(`${source}:${lineNo} is neither a JSON object nor "query<TAB>document".`);
  }
  return [line.slice(0, tab), line.slice(tab + 1)];
}

export function loadWorkload(opts: { pairs: number; seed: number; pairsFile?: string }): Workload {
  if (opts.pairsFile) {
    let text: string;
    try {
      text = readFileSync(opts.pairsFile, 'utf8');
    } catch (err) {
      throw new InputError(`Cannot read --pairs-file ${opts.pairsFile}: ${(err as Error).message}`);
    }
    const pairs = parsePairsText(text, opts.pairsFile);
    return { pairs, description: `${pairs.length} pairs from ${opts.pairsFile} (cycled as needed)` };
  }
  return {
    pairs: msMarcoPairs(opts.pairs, opts.seed),
    description: `MS MARCO-like synthetic queries and passages, seed ${opts.seed}`,
  };
}
