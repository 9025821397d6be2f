/**
 * What bounds the hub's work besides the caller's signal: a request that makes no progress for the stall
 * timeout fails with E_DOWNLOAD (StallGuard), whatever the server does.
 */
import { AbortedError, DownloadError } from '../errors';

/**
 * The stall timeout, in seconds, when neither the `stallTimeoutMs` option nor HF_HUB_ETAG_TIMEOUT (for
 * metadata requests) / HF_HUB_DOWNLOAD_TIMEOUT (for downloads) sets it: a request fails once it waits
 * that long for response headers, or a download receives less than STALL_MIN_BYTES in that long.
 */
export const STALL_TIMEOUT_DEFAULT_S = 10;
/** Less than this in one stall-timeout window counts as no progress (a 1 byte/s trickle is a stall). */
export const STALL_MIN_BYTES = 1024;

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortedError(undefined, { cause: signal.reason });
}

/**
 * Aborts a request that makes no progress, the bound on every request besides the caller's signal:
 * no response headers within `ms` (connecting included), then, for a body, less than STALL_MIN_BYTES
 * (or what is left) in any `ms` window, so a server trickling a byte a second fails like a silent one.
 */
export class StallGuard {
  readonly signal: AbortSignal;
  /** Set once the guard fired: the error to report (E_DOWNLOAD naming the URL and the timeout). */
  stalled: DownloadError | undefined;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private got = 0;

  constructor(
    private readonly ms: number,
    private url: string,
    private readonly env: string,
    parent?: AbortSignal,
  ) {
    this.signal = parent ? AbortSignal.any([parent, this.abort.signal]) : this.abort.signal;
    this.waitHeaders(url);
  }

  /** (Re)starts the wait for response headers, for `url` (each redirect hop gets the full time). */
  waitHeaders(url: string): void {
    this.url = url;
    this.stop();
    this.timer = setTimeout(() => this.fire('sent no response'), this.ms);
  }

  /** Headers are in: from now on every window must bring STALL_MIN_BYTES, or the rest of the body. */
  waitBody(remaining: number): void {
    this.stop();
    this.got = 0;
    let left = remaining;
    this.timer = setInterval(() => {
      if (this.got < Math.min(STALL_MIN_BYTES, left)) this.fire(`sent ${this.got} bytes`);
      left -= this.got;
      this.got = 0;
    }, this.ms);
  }

  progress(bytes: number): void {
    this.got += bytes;
  }

  stop(): void {
    clearTimeout(this.timer);
    clearInterval(this.timer);
  }

  private fire(what: string): void {
    this.stop();
    const where = new URL(this.url);
    // Only origin and path: a CDN URL's query is a signature that does not belong in logs.
    this.stalled = new DownloadError(
      `${where.origin}${where.pathname} ${what} in ${this.ms} ms (the stall timeout: the stallTimeoutMs option, ` +
        `else ${this.env} in seconds, default ${STALL_TIMEOUT_DEFAULT_S} s).`,
    );
    this.abort.abort(this.stalled);
  }
}
