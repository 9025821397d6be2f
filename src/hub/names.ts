/**
 * What a name taken from outside may look like before any path is built from it. Everything here comes
 * from someone else: ETag / X-Repo-Commit headers (the Hub, a mirror, or whatever HF_ENDPOINT points at),
 * ref files in the cache, the caller's revision and repo id, and file names a repo lists (the shards of
 * model.safetensors.index.json). Predicates only: callers raise the error that fits their context.
 */

/** A git commit: 40 lowercase hex characters (what X-Repo-Commit and refs/<revision> hold). */
export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;

/**
 * `W/"abc"` -> `abc` as huggingface_hub normalises an ETag, then lowercased; the result when it is a
 * sha256 (LFS files) or a git blob sha1 (small files), else undefined. Blobs are named by it.
 */
export function normalizeEtag(raw: string): string | undefined {
  const etag = raw.trim().replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
  return SHA256_RE.test(etag) || COMMIT_RE.test(etag) ? etag : undefined;
}

/** Which hash an (already normalised) etag is: LFS etags are sha256, small files' etags are git blob sha1s. */
export function etagHashKind(etag: string): 'sha256' | 'git-sha1' | undefined {
  if (SHA256_RE.test(etag)) return 'sha256';
  if (COMMIT_RE.test(etag)) return 'git-sha1';
  return undefined;
}

/** Longest revision / file name accepted (git and the Hub allow far less in practice). */
const MAX_NAME = 255;

/**
 * A branch or tag name as `git check-ref-format` accepts it (also `refs/pr/1`), or a commit hash: no
 * `..`, no `@{`, no component starting with `.` or ending with `.lock`, no leading, trailing or double
 * `/`, no trailing `.`, no control characters, space, backslash or any of `~^:?*[`.
 */
export function isRevision(rev: string): boolean {
  if (typeof rev !== 'string' || rev.length === 0 || rev.length > MAX_NAME || rev === '@') return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(rev) || rev.includes('..') || rev.includes('@{')) return false;
  if (rev.endsWith('.')) return false;
  return rev.split('/').every((c) => c !== '' && !c.startsWith('.') && !c.endsWith('.lock'));
}

/**
 * A Hub repo id as huggingface_hub's validate_repo_id accepts it: `name` or `org/name`, each part 1-96
 * of [A-Za-z0-9_.-] starting and ending with a letter, digit or `_`, and no `--` or `..` anywhere
 * (`--` separates the parts in the cache folder's name).
 */
export function isRepoId(id: string): boolean {
  if (typeof id !== 'string' || id.includes('--') || id.includes('..')) return false;
  const parts = id.split('/');
  return parts.length <= 2 && parts.every((p) => /^\w(?:[\w.-]{0,94}\w)?$/.test(p));
}

/**
 * A file name inside a repo: relative, `/`-separated, no empty, `.` or `..` segment, no backslash,
 * no control characters, no drive letter or other `:` (Windows streams), each segment <= 255 bytes.
 */
export function isRepoFile(name: string): boolean {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\x00-\x1f\x7f\\:]/.test(name)) return false;
  return name
    .split('/')
    .every((s) => s !== '' && s !== '.' && s !== '..' && Buffer.byteLength(s) <= MAX_NAME);
}

/** A shard named by model.safetensors.index.json: a plain `*.safetensors` file name next to the index. */
export function isShardName(name: unknown): name is string {
  return typeof name === 'string' && isRepoFile(name) && /^[\w.-]+\.safetensors$/.test(name);
}

/** A string from outside, shortened and quoted for an error message (it may hold anything). */
export function quote(s: unknown): string {
  const text = JSON.stringify(String(s)) ?? '""';
  return text.length > 120 ? `${text.slice(0, 117)}..."` : text;
}
