/**
 * Where MLX's CUDA backend keeps the kernels it compiles at run time, so that a second process loads
 * them instead of compiling them again (a fresh process spent 13.4 s compiling on an H200).
 *
 * MLX reads MLX_PTX_CACHE_DIR once, at its first run-time-compiled kernel, and defaults to
 * /tmp/mlx/<version>/ptx: lost on reboot on many systems, and shared by every user of the machine. By
 * default the mlx engine uses a per-user folder instead, `$XDG_CACHE_HOME/mlx-rerank/mlx-kernels`
 * (`~/.cache/...` when XDG_CACHE_HOME is unset): the XDG place for a per-user, re-creatable cache. It is
 * kept apart from the Hugging Face cache on purpose: that one may be shared by several users or machines
 * (HF_HOME on a shared volume), and compiled kernels are specific to one GPU architecture and one MLX
 * version (native/mlx_kernel_cache.h adds a `<mlx version>-<sm_XY>` leaf below this folder).
 *
 * The engine option `kernelCacheDir` overrides it ('none' or '': MLX's default); an explicit
 * MLX_PTX_CACHE_DIR in the environment wins over both. The setting is process-wide and decided by the
 * first mlx engine loaded (MLX reads it once); later, different values have no effect.
 */
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { InputError } from './errors';

/**
 * Why a folder is not fit to hold code this process will load; undefined when it is. A symbolic link is
 * refused unless `ownLinks` and this user owns the link (the folder it names is then checked).
 */
function unfit(dir: string, ownLinks = false): string | undefined {
  const uid = process.getuid?.();
  const link = lstatSync(dir);
  if (link.isSymbolicLink() && (!ownLinks || (uid !== undefined && link.uid !== uid)))
    return 'it is a symbolic link';
  const st = link.isSymbolicLink() ? statSync(dir) : link;
  if (!st.isDirectory()) return 'it is not a folder';
  if (uid !== undefined && st.uid !== uid) return `it belongs to user ${st.uid}, not to this user (${uid})`;
  if ((st.mode & 0o022) !== 0) return `other users may write to it (mode ${(st.mode & 0o777).toString(8)})`;
  return undefined;
}

/**
 * Creates `root/...parts` one folder at a time (mode 0700), and checks each created-or-found folder is
 * a real folder of this user that nobody else can write to: a symlink planted by another user is
 * refused, never followed. `root` itself must exist already or be creatable. Throws InputError.
 */
export function ensurePrivateDir(root: string, parts: readonly string[]): string {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  let dir = root;
  for (const part of parts) {
    dir = join(dir, part);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const why = unfit(dir);
    if (why !== undefined) {
      throw new InputError(
        `The kernel cache folder ${dir} cannot be used: ${why}. Remove it, or set engine.kernelCacheDir to another folder (or 'none').`,
      );
    }
  }
  return dir;
}

/** The default base folder: `$XDG_CACHE_HOME/mlx-rerank/mlx-kernels`, or `~/.cache/...`. */
export function defaultKernelCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec: a relative XDG_CACHE_HOME is invalid and is ignored.
  return xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
}

/**
 * The base folder to hand to the mlx engine as `kernelCacheDir` ('' = leave MLX's own setting), created
 * when needed. `option` is the caller's engine.kernelCacheDir (already checked: undefined, '', 'none' or
 * an absolute path). An explicit folder that cannot be used is an InputError; when the default one cannot
 * (a read-only home, say), MLX's default is left in place: a cold start is slower, not broken.
 */
export function prepareKernelCache(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (env.MLX_PTX_CACHE_DIR) return ''; // MLX reads it itself; the caller's environment wins
  if (option === '' || option === 'none') return '';
  if (option !== undefined) {
    try {
      mkdirSync(option, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new InputError(
        `engine.kernelCacheDir ${option} cannot be created (${(err as Error).message}). Use another folder, or 'none'.`,
        { cause: err },
      );
    }
    const why = unfit(option, true);
    if (why !== undefined) {
      throw new InputError(
        `engine.kernelCacheDir ${option} cannot be used: ${why}. Use another folder, or 'none'.`,
      );
    }
    return option;
  }
  try {
    return ensurePrivateDir(defaultKernelCacheRoot(env), ['mlx-rerank', 'mlx-kernels']);
  } catch {
    return '';
  }
}

/** Loads of the mlx backend on a CUDA GPU (or 'auto') get `kernelCacheDir` resolved (see prepareKernelCache); others pass through. */
export function withKernelCache<T extends { backend?: string; device?: string; kernelCacheDir?: string }>(
  o: T,
  env: NodeJS.ProcessEnv = process.env,
): T {
  // MLX's Metal backend (macOS) compiles no kernels through this cache.
  if (o.backend !== 'mlx' || o.device === 'cpu' || process.platform === 'darwin') return o;
  return { ...o, kernelCacheDir: prepareKernelCache(o.kernelCacheDir, env) };
}
