/**
 * Runs resolveModel in a separate process (for the cross-process cache tests):
 *   node --import tsx test/helpers/resolve-child.ts '<json {id, opts}>'
 * Prints one JSON line: {ok: true, files} or {ok: false, code, message}.
 */
import { resolveModel } from '../../src/hub';

async function main(): Promise<void> {
  const { id, opts } = JSON.parse(process.argv[2] ?? '{}') as { id: string; opts: Record<string, unknown> };
  try {
    const files = await resolveModel(id, { ...opts, progress: false });
    process.stdout.write(`${JSON.stringify({ ok: true, files })}\n`);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    process.stdout.write(`${JSON.stringify({ ok: false, code: e.code, message: e.message })}\n`);
  }
}

void main();
