/**
 * A tokenizer worker thread (src/tokenizer-pool.ts starts them): loads the model's Tokenizer from the
 * same files as the JS thread, builds the same PairEncoder (src/scheduler/encoder.ts), says it is ready
 * with its fingerprint, then encodes chunks of pairs, one message at a time, and sends the sequences
 * back packed into typed arrays whose buffers are transferred, not copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InputError, MlxRerankError } from './errors';
import { fingerprint, makeEncoder } from './scheduler/encoder';
import { Tokenizer } from './tokenizer';
import type { ChunkRequest, WorkerData, WorkerReply } from './tokenizer-pool';

const port = parentPort;
if (!port) throw new Error('src/tokenizer-worker.ts runs as a worker thread (src/tokenizer-pool.ts)');

/** An error as data (code and message), for fromNativeError on the other side. */
function asData(err: unknown): { code: string; message: string } {
  if (err instanceof MlxRerankError) return { code: err.code, message: err.message };
  return { code: 'E_BAD_TOKENIZER', message: err instanceof Error ? err.message : String(err) };
}

const data = workerData as WorkerData;
// The listener goes on at once (messages wait in it for the tokenizer); it keeps the thread alive.
const encoder = Tokenizer.fromFiles(data.files).then((t) => {
  const encode = makeEncoder(t, data.encoder);
  return { encode, print: fingerprint(t, encode) };
});
encoder.then(
  ({ print }) => port.postMessage({ type: 'ready', fingerprint: print } satisfies WorkerReply),
  (err: unknown) => port.postMessage({ type: 'failed', ...asData(err) } satisfies WorkerReply),
);

port.on('message', (req: ChunkRequest) => {
  void encoder.then(
    ({ encode }) => port.postMessage(...encodeChunk(encode, req)),
    () => undefined,
  );
});

/** The chunk's sequences packed, or the error of its first pair that could not be encoded. */
function encodeChunk(
  encode: ReturnType<typeof makeEncoder>,
  req: ChunkRequest,
): [WorkerReply, ArrayBuffer[]] {
  const t0 = performance.now();
  const n = req.pairs.length;
  const segsPerPair = new Int32Array(n);
  const all: { ids: Int32Array; typeIds: Int32Array; truncated: boolean }[] = [];
  let tokens = 0;
  for (let i = 0; i < n; i++) {
    try {
      const [q, d] = req.pairs[i] as readonly [string, string];
      const segs = encode(q, d);
      if (segs.length === 0) throw new InputError(`Pair ${req.first + i} produced no sequence to score.`);
      segsPerPair[i] = segs.length;
      for (const s of segs) {
        all.push(s);
        tokens += s.ids.length;
      }
    } catch (err) {
      // As on the JS thread (src/scheduler/queue.ts): our errors as they are, anything else an InputError.
      const e = err instanceof MlxRerankError ? err : new InputError(`Pair ${req.first + i}: ${String(err)}`);
      return [{ type: 'error', id: req.id, code: e.code, message: e.message }, []];
    }
  }
  const ids = new Int32Array(tokens);
  const typeIds = new Int32Array(tokens);
  const ends = new Int32Array(all.length);
  const truncated = new Uint8Array(all.length);
  let at = 0;
  for (let k = 0; k < all.length; k++) {
    const s = all[k] as (typeof all)[number];
    ids.set(s.ids, at);
    typeIds.set(s.typeIds, at);
    at += s.ids.length;
    ends[k] = at;
    truncated[k] = s.truncated ? 1 : 0;
  }
  const ms = performance.now() - t0;
  const reply: WorkerReply = { type: 'done', id: req.id, ids, typeIds, ends, segsPerPair, truncated, ms };
  return [reply, [ids.buffer, typeIds.buffer, ends.buffer, segsPerPair.buffer, truncated.buffer]];
}
