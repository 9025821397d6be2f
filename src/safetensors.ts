/**
 * The package's safetensors writer and its 16-bit conversions: u64 little-endian header length, the JSON
 * header (padded with spaces so the data starts 8-byte aligned, as the reference writer does), then the
 * tensors' bytes, little-endian, at the header's data_offsets. The engines' reader is native
 * (native/weights.cpp); the header reader below serves the bench's tools (conversion, the stored dtype,
 * the ONNX export), which check each tensor they use against it.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InputError, WeightsError } from './errors';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

export interface TensorData {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array;
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** One tensor as stored: its safetensors dtype tag, shape and little-endian bytes. */
export interface StoredTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * The one safetensors layout writer: the 8-byte header length, the JSON header (with `format: pt`
 * metadata, padded with spaces so the data starts 8-byte aligned), then each tensor's bytes in order.
 * Returns the chunks to write or concatenate.
 */
export function safetensorsChunks(tensors: Iterable<[string, StoredTensor]>): Uint8Array[] {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    chunks.push(t.bytes);
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...chunks];
}

/** Checks float tensors (an InputError names what is wrong) and encodes them in their dtypes. */
function storedTensors(tensors: Record<string, TensorData>): [string, StoredTensor][] {
  return Object.entries(tensors).map(([name, t]) => {
    if (!name || name === '__metadata__')
      throw new InputError(`Invalid tensor name ${JSON.stringify(name)}.`);
    if (!(t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16')) {
      throw new InputError(`Tensor ${name}: dtype must be F32, F16 or BF16, not ${JSON.stringify(t.dtype)}.`);
    }
    if (!Array.isArray(t.shape) || t.shape.some((s) => !Number.isSafeInteger(s) || s < 0)) {
      throw new InputError(
        `Tensor ${name}: shape must be non-negative integers, not ${JSON.stringify(t.shape)}.`,
      );
    }
    if (!(t.data instanceof Float32Array) || t.data.length !== numel(t.shape)) {
      throw new InputError(
        `Tensor ${name}: data holds ${t.data?.length} values, its shape needs ${numel(t.shape)}.`,
      );
    }
    return [name, { dtype: t.dtype, shape: t.shape, bytes: encode(t) }];
  });
}

/** A safetensors file's bytes for float tensors, each stored in its own dtype. */
export function safetensorsBytes(tensors: Record<string, TensorData>): Buffer {
  return Buffer.concat(safetensorsChunks(storedTensors(tensors)));
}

/** Writes a safetensors file atomically (a temporary name, then rename). */
export async function writeSafetensors(path: string, tensors: Record<string, TensorData>): Promise<void> {
  const chunks = safetensorsChunks(storedTensors(tensors));
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.incomplete`;
  const fh = await open(tmp, 'w');
  try {
    for (const chunk of chunks) await fh.write(chunk);
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

function encode(t: TensorData): Uint8Array {
  if (t.dtype === 'F32') {
    const out = new Uint8Array(t.data.length * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < t.data.length; i++) view.setFloat32(i * 4, t.data[i] as number, true);
    return out;
  }
  const out = new Uint8Array(t.data.length * 2);
  const view = new DataView(out.buffer);
  const conv = t.dtype === 'F16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < t.data.length; i++) view.setUint16(i * 2, conv(t.data[i] as number), true);
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 -> IEEE half bits, round to nearest even, with subnormals, overflow to infinity, NaN kept. */
export function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // rounds to zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry into the exponent: still correct
  e = h >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : h);
}

/** bfloat16 bits -> number (exact: the upper half of a float32). */
export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0] as number;
}

/** IEEE half bits -> number (for tests and readers). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** One header entry as a safetensors file declares it (unchecked: its reader checks what it uses). */
export interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A safetensors header: tensor name -> entry, and the offset of the data in the file. */
export interface SafetensorsHeader {
  entries: Map<string, HeaderEntry>;
  dataStart: number;
}

/** The largest header read: real headers are tens of KB; beyond this the file is not trusted. */
const MAX_HEADER_BYTES = 64 << 20;

/** Checks the declared header length against the file's size and the bound above. */
function headerLength(lenBytes: Buffer, fileBytes: number, source: string): number {
  const n = lenBytes.readBigUInt64LE(0);
  if (n > BigInt(Math.min(MAX_HEADER_BYTES, Math.max(0, fileBytes - 8)))) {
    throw new WeightsError(
      `${source}: header length ${n} exceeds the file (${fileBytes} bytes) or ${MAX_HEADER_BYTES}.`,
    );
  }
  return Number(n);
}

/** The header's JSON: strict UTF-8, an object; `__metadata__` left out. */
function headerEntries(json: Uint8Array, source: string): Map<string, HeaderEntry> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (err) {
    throw new WeightsError(`${source}: header is not valid UTF-8 JSON.`, { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new WeightsError(`${source}: header is not a JSON object.`);
  }
  const entries = new Map<string, HeaderEntry>();
  for (const [name, entry] of Object.entries(parsed)) {
    if (name !== '__metadata__') entries.set(name, entry as HeaderEntry);
  }
  return entries;
}

/** The header of a safetensors file held in memory. */
export function parseSafetensorsHeader(file: Buffer, source: string): SafetensorsHeader {
  if (file.length < 8) throw new WeightsError(`${source}: file of ${file.length} bytes has no header.`);
  const n = headerLength(file, file.length, source);
  return { entries: headerEntries(file.subarray(8, 8 + n), source), dataStart: 8 + n };
}

/** The header of a safetensors file on disk, read without reading its tensors. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    if (readSync(fd, len, 0, 8, 0) !== 8)
      throw new WeightsError(`${path} is shorter than a safetensors header.`);
    const n = headerLength(len, fstatSync(fd).size, path);
    const text = Buffer.alloc(n);
    if (readSync(fd, text, 0, n, 8) !== n) throw new WeightsError(`${path}: its header is truncated.`);
    return { entries: headerEntries(text, path), dataStart: 8 + n };
  } finally {
    closeSync(fd);
  }
}
