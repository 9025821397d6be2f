/**
 * Callers' callbacks ('batch' / 'call' listeners, onBatch, onMetrics, onProgress) run isolated: one
 * that throws is reported as a process warning (`process.on('warning')`, code MLX_RERANK_LISTENER) and
 * neither stops the callbacks after it nor reaches the scheduler or the call it was told about.
 */
export const LISTENER_WARNING_CODE = 'MLX_RERANK_LISTENER';

export function callSafely<T>(fn: (v: T) => void, v: T, what: string): void {
  try {
    fn(v);
  } catch (err) {
    process.emitWarning(`mlx-rerank: ${what} threw: ${String(err)}`, {
      type: 'MlxRerankWarning',
      code: LISTENER_WARNING_CODE,
      detail: err instanceof Error && err.stack ? err.stack : undefined,
    });
  }
}
