/**
 * Which engines this install can run, and why one cannot: the addon's own report, with the build-time
 * MLX detection (scripts/find-mlx.mjs writes build/mlx-status.json) folded into the mlx entry so that
 * users see what was tried, e.g. "mlx: absent — not found at build time (tried: MLX_DIR unset,
 * python3 -m mlx: no module, ...)".
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type NativeBackendInfo, type NativeBackends, native, packageRoot } from './native';
import type { ModelFamily } from './types';

/**
 * The model families the mlx engine runs (docs/models.md); `backend: 'auto'` sends any other family to
 * the cpu engine even where MLX has a GPU (`pickBackend`). Since the mlx engine reads the one model
 * contract (native/model_spec.h), that is every family the package loads.
 */
export const MLX_FAMILIES: ReadonlySet<ModelFamily> = new Set<ModelFamily>([
  'bert',
  'xlm-roberta',
  'electra',
  'modernbert',
]);

/** build/mlx-status.json, as scripts/find-mlx.mjs writes it. */
export interface MlxBuildStatus {
  found: boolean;
  version?: string;
  /** Where it was found, e.g. "MLX_DIR=/opt/mlx". */
  from?: string;
  libDir?: string;
  tried: string[];
  reason?: string;
}

export function mlxBuildStatus(root = packageRoot()): MlxBuildStatus | undefined {
  try {
    const status = JSON.parse(readFileSync(join(root, 'build', 'mlx-status.json'), 'utf8')) as MlxBuildStatus;
    return Array.isArray(status.tried) && typeof status.found === 'boolean' ? status : undefined;
  } catch {
    return undefined;
  }
}

const INSTALL_HINT =
  'Install MLX >= 0.30 (macOS: `brew install mlx` or `pip install mlx`; Linux: `pip install "mlx[cpu]"` or ' +
  '`"mlx[cuda]"`, or build it from source), or set MLX_DIR to its prefix, then rebuild: `npm rebuild mlx-rerank`.';

/** The mlx entry's reason, explained with what the build tried. */
export function explainMlx(info: NativeBackendInfo, status: MlxBuildStatus | undefined): NativeBackendInfo {
  if (info.available) return info;
  // The addon says more than "not compiled in" (e.g. MLX failed to initialise): keep its words.
  if (info.reason && info.reason !== 'not compiled in') return info;
  let reason: string;
  if (!status) {
    reason = `absent — this build of the addon was made without MLX (no build-time detection report). ${INSTALL_HINT}`;
  } else if (!status.found) {
    reason = `absent — not found at build time (tried: ${status.tried.join('; ')}). ${INSTALL_HINT}`;
  } else {
    // Found at build time, yet the loaded addon lacks it: node-gyp-build picked a prebuild without MLX.
    reason =
      `absent — MLX ${status.version ?? ''} was found at build time (${status.from ?? 'see build/mlx-status.json'}) ` +
      'but the loaded addon was built without it (a prebuild?). Rebuild from source: `npm rebuild mlx-rerank --build-from-source`.';
  }
  return { ...info, available: false, reason };
}

/** The engines the loaded addon offers (cpu always; mlx when compiled in), with reasons for absences. */
export function backends(): NativeBackends {
  const info = native().backends();
  return { ...info, mlx: explainMlx(info.mlx, mlxBuildStatus()) };
}
