/**
 * `npm run bench:tokenizer-hostile` (node --import tsx bench/tokenizer-hostile.ts): the longest time one
 * encodePair / encodeChunks call holds the JS thread on hostile documents of --mb MB (default 50),
 * with the standard BERT vocabulary plus one extra added token (`<e1>`), maxLength 512: CPU ms of the
 * slowest of --reps warm calls (default 3), and of the first (cold) call. The README promises no stall over 50 ms for any input.
 */
import { parseArgs } from 'node:util';
import { Tokenizer } from '../src/tokenizer';
import { bertTokenizerJson } from '../src/tokenizer/tokenizer-json';
import { bertUncasedVocab } from '../src/workload';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '50' }, reps: { type: 'string', default: '3' } },
});
const gc = (globalThis as { gc?: () => void }).gc;
const size = Math.round(Number(values.mb) * 1e6);
const reps = Number(values.reps);

const json = bertTokenizerJson(bertUncasedVocab(), {
  lowercase: true,
  stripAccents: null,
  chineseChars: true,
});
(json.added_tokens as unknown[]).push({
  id: 1,
  content: '<e1>',
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
});
const tok = Tokenizer.fromTokenizerJson(json);

// A flat string, as JSON.parse or an HTTP body gives: `repeat` makes a rope, which V8 flattens (copies)
// on first indexed access, a cost that is not the tokenizer's.
const flat = (s: string) => Buffer.from(s, 'utf16le').toString('utf16le');
const fill = (unit: string) => flat(unit.repeat(Math.ceil(size / unit.length)).slice(0, size));
const docs: Array<[string, () => string]> = [
  ['"[" x N', () => fill('[')],
  ['"a" x N (one word)', () => fill('a')],
  ['"a " x N', () => fill('a ')],
  ['combining marks (e + U+0301/U+0316...)', () => flat(`e${fill('\u0301\u0316')}`)],
  ['emoji (ZWJ family)', () => fill('👨\u200d👩\u200d👧')],
  ['zero-width / control chars', () => fill('\u200b\u0007\ufeff')],
  ['"<e1" x N (added-token prefix)', () => fill('<e1')],
  ['"<e1>" x N', () => fill('<e1>')],
  ['CJK', () => fill('中文')],
  ['Unicode spaces', () => fill('\u3000\u00a0\u2003')],
];

const rows = [];
for (const [name, make] of docs) {
  const doc = make();
  // CPU time of this thread's process, not wall time: other processes on a shared machine do not
  // count. The first call (cold: V8 compiles the code on its way) and the worst of the others.
  const time = (fn: () => unknown) => {
    const t: number[] = [];
    for (let r = 0; r < reps + 1; r++) {
      gc?.(); // a collection of the previous documents' garbage is not the call's cost
      const c0 = process.cpuUsage();
      fn();
      const c = process.cpuUsage(c0);
      t.push((c.user + c.system) / 1000);
    }
    return `${Math.max(...t.slice(1)).toFixed(1)} (cold ${(t[0] as number).toFixed(1)})`;
  };
  const pair = time(() => tok.encodePair('what is this', doc, { maxLength: 512 }));
  const pairRev = time(() => tok.encodePair(doc, doc, { maxLength: 512 }));
  const chunks = time(() => tok.encodeChunks('what is this', doc, { maxLength: 512, stride: 128 }));
  rows.push({
    document: name,
    'encodePair ms': pair,
    'both sides ms': pairRev,
    'encodeChunks ms': chunks,
  });
}
console.log(
  `${values.mb} MB documents (UTF-16 code units: ${size}), CPU ms, worst of ${reps} warm calls, node ${process.version}`,
);
console.table(rows);
