/** What the report's Markdown, its charts and the scenario index share: number formats, tables, row labels. */
import type { ConfigResult, EngineRun, ScenarioResult } from './results';

/** Fixed decimals, "-" for NaN (no data). */
export function f(v: number | undefined, digits = 2): string {
  return v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

export function ratio(v: number, base: number): string {
  return Number.isFinite(v) && Number.isFinite(base) && base > 0 ? `${(v / base).toFixed(2)}x` : '-';
}

export function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((h) => '-'.repeat(Math.max(3, h.length + 2))).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

export function baseName(s: Pick<ScenarioResult, 'number' | 'name'>): string {
  return `${s.number}_${s.name}`;
}

export interface Row {
  run: EngineRun;
  cfg: ConfigResult;
}

export function rowsOf(s: ScenarioResult): Row[] {
  return s.runs.flatMap((run) => run.configs.map((cfg) => ({ run, cfg })));
}

export function multiEngine(s: ScenarioResult): boolean {
  return s.runs.filter((r) => r.status === 'ok').length > 1;
}

export function cfgLabel(s: ScenarioResult, { run, cfg }: Row, short = false): string {
  const c = short
    ? `batch=${cfg.batch}, conc=${cfg.concurrency}`
    : `batch=${cfg.batch}, concurrency=${cfg.concurrency}`;
  return multiEngine(s) ? `${run.label}, ${c}` : c;
}
