/**
 * vitest globalSetup: `npm test` must leave the checkout as it found it. Records what `npm pack` would
 * ship, `git status` and the built addon before the run, and fails the run if any of them changed after
 * it (a test that rebuilt build/, wrote prebuilds/ or dist/, or left a file behind).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/native';
import { packFiles } from './package-stage';

interface TreeState {
  pack: string[];
  git: string;
  addon: string;
}

function snapshot(root: string): TreeState {
  const git = spawnSync('git', ['status', '--porcelain', '--untracked-files=all'], {
    cwd: root,
    encoding: 'utf8',
  });
  const addon = join(root, 'build', 'Release', 'mlx_rerank.node');
  return {
    pack: packFiles(root),
    git: git.status === 0 ? git.stdout : '(not a git checkout)',
    addon: existsSync(addon)
      ? `${statSync(addon).size} bytes, modified ${statSync(addon).mtimeMs}`
      : 'absent',
  };
}

/** The differences between two snapshots, one line each (empty: unchanged). */
export function treeChanges(before: TreeState, after: TreeState): string[] {
  const changes: string[] = [];
  const was = new Set(before.pack);
  const is = new Set(after.pack);
  for (const f of after.pack) if (!was.has(f)) changes.push(`npm pack now ships ${f}`);
  for (const f of before.pack) if (!is.has(f)) changes.push(`npm pack no longer ships ${f}`);
  if (before.git !== after.git) changes.push(`git status changed:\n${before.git}--- to ---\n${after.git}`);
  if (before.addon !== after.addon)
    changes.push(`build/Release/mlx_rerank.node changed: ${before.addon} -> ${after.addon}`);
  return changes;
}

export default function setup(): () => void {
  const root = packageRoot();
  const before = snapshot(root);
  return () => {
    const changes = treeChanges(before, snapshot(root));
    if (!changes.length) return;
    // vitest reports a teardown error but keeps its exit status: set ours.
    process.exitCode = 1;
    throw new Error(`The test run changed the checkout:\n${changes.join('\n')}`);
  };
}
