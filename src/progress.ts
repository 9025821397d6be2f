/**
 * Download progress: an `onProgress` callback for services, and a one-line bar on a TTY (stderr) for
 * people. Off a TTY nothing is printed, so logs and pipes stay clean. A callback that throws is
 * reported as a warning (src/listeners.ts) and does not stop the download.
 */
import { callSafely } from './listeners';

export interface ProgressEvent {
  file: string;
  loaded: number;
  total: number;
}

export interface ProgressReporter {
  update: (file: string, loaded: number, total: number) => void;
  finish: () => void;
}

export function createProgressReporter(
  onProgress: ((p: ProgressEvent) => void) | undefined,
  bar: boolean,
  stream: NodeJS.WriteStream = process.stderr,
): ProgressReporter {
  const tty = bar ? new ProgressBar(stream) : undefined;
  return {
    update(file, loaded, total) {
      if (onProgress) callSafely(onProgress, { file, loaded, total }, 'onProgress');
      tty?.update(file, loaded, total);
    },
    finish() {
      tty?.finish();
    },
  };
}

/** Redraws at most 10 times a second; one line per file, ended when the file completes. */
export class ProgressBar {
  private file = '';
  private started = 0;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private open = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly now: () => number = Date.now,
  ) {}

  update(file: string, loaded: number, total: number): void {
    const t = this.now();
    if (file !== this.file) {
      this.finish();
      this.file = file;
      this.started = t;
      this.lastDraw = Number.NEGATIVE_INFINITY; // a new file is always drawn
    }
    const complete = loaded >= total;
    if (!complete && t - this.lastDraw < 100) return;
    this.lastDraw = t;
    this.stream.write(`\r${renderBar(file, loaded, total, (t - this.started) / 1000, this.columns())}`);
    this.open = true;
    if (complete) this.finish();
  }

  finish(): void {
    if (this.open) this.stream.write('\n');
    this.open = false;
    this.file = '';
  }

  private columns(): number {
    return this.stream.columns && this.stream.columns > 40 ? this.stream.columns : 80;
  }
}

/** "config.json  [#######-------]  52%  1.2/2.3 MB  4.1 MB/s", fitted to `width` columns. */
export function renderBar(file: string, loaded: number, total: number, seconds: number, width = 80): string {
  const frac = total > 0 ? Math.min(1, loaded / total) : 1;
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const rate = seconds > 0 ? `${formatBytes(loaded / seconds)}/s` : '';
  const tail = ` ${pct}  ${formatBytes(loaded)}/${formatBytes(total)}  ${rate}`;
  const name = file.length > 28 ? `…${file.slice(-27)}` : file;
  const barWidth = Math.max(5, width - 1 - name.length - tail.length - 3); // 3: ' [' and ']'
  const filled = Math.round(frac * barWidth);
  return `${name} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]${tail}`.slice(0, width - 1);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
