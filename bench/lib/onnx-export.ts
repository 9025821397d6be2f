/**
 * Writes a Hugging Face BERT sequence classifier (config.json + model.safetensors) as a float32 ONNX
 * graph that transformers.js loads offline, so the bench can run transformers.js on the very weights
 * our engines run (no Python, torch or onnx package on the bench machines).
 *
 * The graph follows what `torch.onnx.export` emits for BertForSequenceClassification (MatMul + Add,
 * Reshape/Transpose heads, Div by sqrt(d), additive mask (1 - mask) * finfo.min, Softmax, erf GELU),
 * with LayerNormalization as one op (opset 17), so ONNX Runtime applies the fusions it applies to a
 * real export. The protobuf is encoded by hand: only the few ONNX messages below are needed.
 */

import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, TokenizerError, UnsupportedModelError, WeightsError } from '../../src/errors';
import type { NativeEngineOptions } from '../../src/native';
import { f16ToF32 } from '../../src/safetensors';
import { bertTokenizerJson } from '../../src/tokenizer/tokenizer-json';

export { bertTokenizerJson };

// ---------------------------------------------------------------------------------------------------
// Protobuf writer: a message is a list of byte chunks, so nesting and 47 MB initializers never copy.

class Pb {
  readonly parts: Uint8Array[] = [];
  length = 0;
  private small: number[] = [];

  private flush(): void {
    if (this.small.length === 0) return;
    this.parts.push(Uint8Array.from(this.small));
    this.small = [];
  }
  private byte(b: number): void {
    this.small.push(b);
    this.length++;
  }
  private varint(value: number): void {
    if (value < 0) {
      // int64 negatives are 10-byte two's complement varints.
      let v = BigInt.asUintN(64, BigInt(value));
      while (v >= 0x80n) {
        this.byte(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
      this.byte(Number(v));
      return;
    }
    let v = value;
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }
  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }
  int(field: number, value: number): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }
  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    for (const x of b) this.byte(x);
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(data.length);
    this.flush();
    this.parts.push(data);
    this.length += data.length;
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, child: Pb): this {
    child.flush();
    this.tag(field, 2);
    this.varint(child.length);
    this.flush();
    for (const p of child.parts) this.parts.push(p);
    this.length += child.length;
    return this;
  }
  toBytes(): Buffer {
    this.flush();
    return Buffer.concat(this.parts, this.length);
  }
}

// ONNX enums (onnx.proto).
const FLOAT = 1;
const INT8 = 3;
const INT64 = 7;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

type Attr = { kind: 'int'; v: number } | { kind: 'float'; v: number } | { kind: 'ints'; v: number[] };
const int = (v: number): Attr => ({ kind: 'int', v });
const float = (v: number): Attr => ({ kind: 'float', v });
const ints = (v: number[]): Attr => ({ kind: 'ints', v });

function attribute(name: string, a: Attr): Pb {
  const m = new Pb().string(1, name);
  if (a.kind === 'float') m.float(2, a.v).int(20, ATTR_FLOAT);
  else if (a.kind === 'int') m.int(3, a.v).int(20, ATTR_INT);
  else {
    for (const x of a.v) m.int(8, x);
    m.int(20, ATTR_INTS);
  }
  return m;
}

/** TensorProto with raw_data (little-endian, as ONNX requires). */
function tensor(name: string, dims: number[], dataType: number, raw: Uint8Array): Pb {
  const m = new Pb();
  for (const d of dims) m.int(1, d);
  return m.int(2, dataType).string(8, name).bytes(9, raw);
}

/** ValueInfoProto; string dims are symbolic (dim_param). */
function valueInfo(name: string, elemType: number, dims: Array<number | string>): Pb {
  const shape = new Pb();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().string(2, d));
  const tensorType = new Pb().int(1, elemType).message(2, shape);
  return new Pb().string(1, name).message(2, new Pb().message(1, tensorType));
}

class Graph {
  private readonly nodes: Pb[] = [];
  private readonly inits: Pb[] = [];
  private readonly names = new Set<string>();
  private count = 0;

  /** Adds an initializer; a name already present is reused (shared constants). */
  init(name: string, dims: number[], data: Float32Array | BigInt64Array | Int8Array): string {
    if (this.names.has(name)) return name;
    this.names.add(name);
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const type = data instanceof Float32Array ? FLOAT : data instanceof Int8Array ? INT8 : INT64;
    this.inits.push(tensor(name, dims, type, raw));
    return name;
  }
  scalar(name: string, v: number): string {
    return this.init(name, [], Float32Array.of(v));
  }
  int64s(name: string, v: number[], dims: number[] = [v.length]): string {
    return this.init(name, dims, BigInt64Array.from(v.map(BigInt)));
  }
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    return this.opN(type, inputs, 1, attrs, output)[0] as string;
  }
  /** A node with `outputs` outputs (e.g. DynamicQuantizeLinear's value, scale and zero point). */
  opN(
    type: string,
    inputs: string[],
    outputs: number,
    attrs: Record<string, Attr> = {},
    output?: string,
  ): string[] {
    const base = output ?? `${type}_${this.count++}`;
    const outs = Array.from({ length: outputs }, (_, i) => (i === 0 ? base : `${base}_${i}`));
    const n = new Pb();
    for (const i of inputs) n.string(1, i);
    for (const o of outs) n.string(2, o);
    n.string(3, `${type}_node_${this.nodes.length}`).string(4, type);
    for (const [k, a] of Object.entries(attrs)) n.message(5, attribute(k, a));
    this.nodes.push(n);
    return outs;
  }
  toModel(inputs: Pb[], outputs: Pb[], opset: number): Buffer {
    const g = new Pb();
    for (const n of this.nodes) g.message(1, n);
    g.string(2, 'bert_sequence_classification');
    for (const t of this.inits) g.message(5, t);
    for (const i of inputs) g.message(11, i);
    for (const o of outputs) g.message(12, o);
    const model = new Pb()
      .int(1, 8) // ir_version 8 goes with opset 17
      .string(2, 'mlx-rerank')
      .string(3, '0.1.0')
      .message(7, g)
      .message(8, new Pb().string(1, '').int(2, opset));
    return model.toBytes();
  }
}

// ---------------------------------------------------------------------------------------------------
// config.json and safetensors

/** The model's shape: the fields the native engines take (src/native.ts). */
export type BertShape = NativeEngineOptions['spec'];

function readBertShape(config: Record<string, unknown>, source: string): BertShape {
  const num = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ConfigError(`${source}: "${key}" must be a positive number (got ${JSON.stringify(v)}).`);
    }
    return v;
  };
  const modelType = config.model_type ?? 'bert';
  if (modelType !== 'bert') {
    throw new UnsupportedModelError(`${source}: model_type "${String(modelType)}" is not "bert".`);
  }
  const act = config.hidden_act ?? 'gelu';
  if (act !== 'gelu' && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh' && act !== 'relu') {
    throw new UnsupportedModelError(`${source}: hidden_act "${String(act)}" is not supported.`);
  }
  const labels = config.id2label ? Object.keys(config.id2label as object).length : undefined;
  const shape: BertShape = {
    vocabSize: num('vocab_size'),
    hiddenSize: num('hidden_size'),
    numLayers: num('num_hidden_layers'),
    numHeads: num('num_attention_heads'),
    intermediateSize: num('intermediate_size'),
    maxPositions: num('max_position_embeddings', 512),
    typeVocabSize: num('type_vocab_size', 2),
    numLabels: num('num_labels', labels ?? 2),
    layerNormEps: num('layer_norm_eps', 1e-12),
    hiddenAct: act,
  };
  if (shape.hiddenSize % shape.numHeads !== 0) {
    throw new ConfigError(`${source}: hidden_size ${shape.hiddenSize} is not a multiple of the heads.`);
  }
  return shape;
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

interface Safetensors {
  get(name: string, shape: number[]): Float32Array;
}

/** Parses and validates the header; tensors are converted to float32 when asked for. */
function parseSafetensors(file: Buffer, source: string): Safetensors {
  if (file.length < 8) throw new WeightsError(`${source}: file of ${file.length} bytes has no header.`);
  const headerLen = Number(file.readBigUInt64LE(0));
  if (headerLen > file.length - 8 || headerLen > 100_000_000) {
    throw new WeightsError(`${source}: header length ${headerLen} exceeds the file (${file.length} bytes).`);
  }
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw new WeightsError(`${source}: header is not valid UTF-8 JSON.`, { cause: err });
  }
  const dataStart = 8 + headerLen;
  const dataLen = file.length - dataStart;
  return {
    get(name, shape) {
      const t = header[name];
      if (!t) throw new WeightsError(`${source}: tensor "${name}" is missing.`);
      const width = DTYPE_BYTES[t.dtype];
      if (!width) throw new WeightsError(`${source}: "${name}" has dtype ${t.dtype}; need F32, F16 or BF16.`);
      if (!Array.isArray(t.shape) || t.shape.join(',') !== shape.join(',')) {
        throw new WeightsError(`${source}: "${name}" has shape [${t.shape}], config says [${shape}].`);
      }
      const count = shape.reduce((a, b) => a * b, 1);
      const [begin, end] = t.data_offsets ?? [];
      if (
        !Number.isInteger(begin) ||
        !Number.isInteger(end) ||
        (begin as number) < 0 ||
        end !== (begin as number) + count * width ||
        (end as number) > dataLen
      ) {
        throw new WeightsError(`${source}: "${name}" data_offsets [${t.data_offsets}] do not fit the file.`);
      }
      const bytes = file.subarray(dataStart + (begin as number), dataStart + (end as number));
      const out = new Float32Array(count);
      if (t.dtype === 'F32') new Uint8Array(out.buffer).set(bytes);
      else if (t.dtype === 'BF16') {
        const u = new Uint32Array(out.buffer);
        for (let i = 0; i < count; i++) u[i] = bytes.readUInt16LE(2 * i) << 16;
      } else for (let i = 0; i < count; i++) out[i] = f16ToF32(bytes.readUInt16LE(2 * i));
      return out;
    },
  };
}

/** torch Linear stores [out, in]; MatMul wants [in, out]. */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c] as number;
  return t;
}

// ---------------------------------------------------------------------------------------------------
// The graph

/**
 * Per-tensor symmetric int8, as onnxruntime's quantize_dynamic quantises QInt8 weights without
 * per_channel: scale = max|w| / 127, q = round-half-even(w / scale) in [-127, 127]; with reduce_range
 * 7 bits: max|w| / 64, q in [-64, 64].
 */
export function quantizeQInt8(w: Float32Array, reduceRange = false): { q: Int8Array; scale: number } {
  const qmax = reduceRange ? 64 : 127;
  let m = 0;
  for (const v of w) m = Math.max(m, Math.abs(v));
  const scale = Math.fround(m / qmax);
  const q = new Int8Array(w.length);
  if (scale === 0) return { q, scale };
  for (let i = 0; i < w.length; i++) {
    const x = (w[i] as number) / scale;
    const r = Math.round(x);
    const even = Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r; // numpy rounds half to even
    q[i] = Math.max(-qmax, Math.min(qmax, even));
  }
  return { q, scale };
}

/**
 * 'q8' is what transformers.js loads for `dtype: 'q8'` (onnx/model_quantized.onnx), made as its
 * conversion script makes it (scripts/quantize.py: onnxruntime quantize_dynamic, IntegerOps, QInt8
 * weights since BERT has no Conv, per_channel and reduce_range off, MatMulConstBOnly): every MatMul
 * with a constant weight becomes DynamicQuantizeLinear (uint8 activations, per tensor, asymmetric) +
 * MatMulInteger + Cast + Mul by the two scales; the embedding Gathers read an int8 table through
 * DequantizeLinear. Attention's MatMuls, LayerNorm, the pooler and classifier (Gemm) stay float32.
 * 'q8-reduce-range' quantises weights to 7 bits (quantize_dynamic's reduce_range): on x86 without
 * VNNI, ONNX Runtime multiplies uint8 x int8 with vpmaddubsw, whose int16 pair sums saturate for
 * 8-bit weights (255 * 127 * 2 > 32767) but not for 7-bit ones, so this variant computes exactly what
 * the graph says on every CPU.
 */
export type OnnxQuantization = 'none' | 'q8' | 'q8-reduce-range';

/** Builds the ONNX model bytes for BertForSequenceClassification over the given weights. */
export function buildBertOnnx(
  shape: BertShape,
  weights: Buffer,
  source = 'model.safetensors',
  quantization: OnnxQuantization = 'none',
): Buffer {
  const st = parseSafetensors(weights, source);
  const { hiddenSize: H, intermediateSize: I, numHeads: NH, numLabels: L } = shape;
  const DH = H / NH;
  const g = new Graph();
  const q8 = quantization !== 'none';
  const reduceRange = quantization === 'q8-reduce-range';
  const w = (name: string, dims: number[]): string => g.init(name, dims, st.get(name, dims));
  // A weight as int8 + its scale and (zero) zero point initializers.
  const qWeight = (name: string, dims: number[], data: Float32Array) => {
    const { q, scale } = quantizeQInt8(data, reduceRange);
    return {
      q: g.init(`${name}_quantized`, dims, q),
      scale: g.init(`${name}_scale`, [], Float32Array.of(scale)),
      zero: g.init(`${name}_zero_point`, [], Int8Array.of(0)),
    };
  };
  const quantizedInputs = new Map<string, string[]>(); // one DynamicQuantizeLinear per tensor, as ORT
  const linear = (x: string, prefix: string, inDim: number, outDim: number): string => {
    const wT = transpose(st.get(`${prefix}.weight`, [outDim, inDim]), outDim, inDim);
    const bias = w(`${prefix}.bias`, [outDim]);
    if (!q8)
      return g.op('Add', [g.op('MatMul', [x, g.init(`${prefix}.weight_T`, [inDim, outDim], wT)]), bias]);
    const qw = qWeight(`${prefix}.weight_T`, [inDim, outDim], wT);
    let xq = quantizedInputs.get(x);
    if (!xq) {
      xq = g.opN('DynamicQuantizeLinear', [x], 3);
      quantizedInputs.set(x, xq);
    }
    const [xv, xs, xz] = xq as [string, string, string];
    const mm = g.op('MatMulInteger', [xv, qw.q, xz, qw.zero]);
    const scaled = g.op('Mul', [g.op('Cast', [mm], { to: int(FLOAT) }), g.op('Mul', [xs, qw.scale])]);
    return g.op('Add', [scaled, bias]);
  };
  const embedding = (name: string, dims: number[], ids: string): string => {
    if (!q8) return g.op('Gather', [w(name, dims), ids]);
    const qw = qWeight(name, dims, st.get(name, dims));
    return g.op('DequantizeLinear', [g.op('Gather', [qw.q, ids]), qw.scale, qw.zero]);
  };
  const layerNorm = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, w(`${prefix}.weight`, [H]), w(`${prefix}.bias`, [H])], {
      axis: int(-1),
      epsilon: float(shape.layerNormEps),
    });

  // Embeddings: positions 0..S-1 are a slice of the table (BERT's default absolute position ids).
  const emb = 'bert.embeddings';
  const words = embedding(`${emb}.word_embeddings.weight`, [shape.vocabSize, H], 'input_ids');
  const seqLen = g.op('Slice', [
    g.op('Shape', ['input_ids']),
    g.int64s('one_i64', [1]),
    g.int64s('two_i64', [2]),
  ]);
  const posName = `${emb}.position_embeddings.weight`;
  const posTable = q8
    ? qWeight(posName, [shape.maxPositions, H], st.get(posName, [shape.maxPositions, H]))
    : null;
  const sliced = g.op('Slice', [
    posTable ? posTable.q : w(posName, [shape.maxPositions, H]),
    g.int64s('zero_i64', [0]),
    seqLen,
    g.int64s('axis0_i64', [0]),
  ]);
  const positions = posTable ? g.op('DequantizeLinear', [sliced, posTable.scale, posTable.zero]) : sliced;
  const types = embedding(`${emb}.token_type_embeddings.weight`, [shape.typeVocabSize, H], 'token_type_ids');
  let x = layerNorm(g.op('Add', [g.op('Add', [words, positions]), types]), `${emb}.LayerNorm`);

  // transformers' extended attention mask: (1 - mask) * finfo(float32).min, broadcast over heads and queries.
  const mask4 = g.op('Cast', [g.op('Unsqueeze', ['attention_mask', g.int64s('axes_1_2', [1, 2])])], {
    to: int(FLOAT),
  });
  const maskAdd = g.op('Mul', [
    g.op('Sub', [g.scalar('one_f32', 1), mask4]),
    g.scalar('finfo_min', -3.4028234663852886e38),
  ]);

  const heads = g.int64s('heads_shape', [0, 0, NH, DH]);
  const merged = g.int64s('merged_shape', [0, 0, H]);
  const scale = g.scalar('sqrt_head_dim', Math.sqrt(DH));
  for (let l = 0; l < shape.numLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    const split = (t: string, perm: number[]): string =>
      g.op('Transpose', [g.op('Reshape', [t, heads])], { perm: ints(perm) });
    const q = split(linear(x, `${p}.attention.self.query`, H, H), [0, 2, 1, 3]);
    const k = split(linear(x, `${p}.attention.self.key`, H, H), [0, 2, 3, 1]);
    const v = split(linear(x, `${p}.attention.self.value`, H, H), [0, 2, 1, 3]);
    const scores = g.op('Add', [g.op('Div', [g.op('MatMul', [q, k]), scale]), maskAdd]);
    const probs = g.op('Softmax', [scores], { axis: int(-1) });
    const ctx = g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: ints([0, 2, 1, 3]) });
    const attn = linear(g.op('Reshape', [ctx, merged]), `${p}.attention.output.dense`, H, H);
    const x1 = layerNorm(g.op('Add', [attn, x]), `${p}.attention.output.LayerNorm`);
    const ffn = linear(
      activation(g, linear(x1, `${p}.intermediate.dense`, H, I), shape.hiddenAct),
      `${p}.output.dense`,
      I,
      H,
    );
    x = layerNorm(g.op('Add', [ffn, x1]), `${p}.output.LayerNorm`);
  }

  // Pooler on token 0, then the classifier (Gemm with the torch [out, in] weights, as torch exports).
  const cls = g.op('Gather', [x, g.int64s('token0', [0], [])], { axis: int(1) });
  const pooled = g.op('Tanh', [
    g.op('Gemm', [cls, w('bert.pooler.dense.weight', [H, H]), w('bert.pooler.dense.bias', [H])], {
      transB: int(1),
    }),
  ]);
  g.op(
    'Gemm',
    [pooled, w('classifier.weight', [L, H]), w('classifier.bias', [L])],
    { transB: int(1) },
    'logits',
  );

  const inputs = ['input_ids', 'attention_mask', 'token_type_ids'].map((n) =>
    valueInfo(n, INT64, ['batch_size', 'sequence_length']),
  );
  return g.toModel(inputs, [valueInfo('logits', FLOAT, ['batch_size', L])], 17);
}

function activation(g: Graph, x: string, act: BertShape['hiddenAct']): string {
  if (act === 'relu') return g.op('Relu', [x]);
  if (act === 'gelu') {
    // x * 0.5 * (1 + erf(x / sqrt 2)), in torch's export order so ORT's GELU fusion recognises it.
    const erf = g.op('Erf', [g.op('Div', [x, g.scalar('sqrt2', Math.SQRT2)])]);
    return g.op('Mul', [
      g.op('Mul', [x, g.op('Add', [erf, g.scalar('one_gelu', 1)])]),
      g.scalar('half', 0.5),
    ]);
  }
  // tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
  const inner = g.op('Mul', [
    g.op('Add', [x, g.op('Mul', [cube, g.scalar('gelu_c', 0.044715)])]),
    g.scalar('sqrt_2_over_pi', Math.sqrt(2 / Math.PI)),
  ]);
  const t = g.op('Add', [g.op('Tanh', [inner]), g.scalar('one_gelu_tanh', 1)]);
  return g.op('Mul', [g.op('Mul', [x, t]), g.scalar('half_tanh', 0.5)]);
}

// ---------------------------------------------------------------------------------------------------
// Tokenizer files: transformers.js 4 needs tokenizer.json + tokenizer_config.json.

async function readJson(
  path: string,
  what: (m: string, o: { cause: unknown }) => Error,
): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw what(`${path} is not readable JSON: ${(err as Error).message}`, { cause: err });
  }
}

async function writeTokenizer(modelDir: string, outDir: string, maxPositions: number): Promise<void> {
  const at = (f: string) => join(modelDir, f);
  const tokErr = (m: string, o: { cause: unknown }) => new TokenizerError(m, o);
  const config = existsSync(at('tokenizer_config.json'))
    ? await readJson(at('tokenizer_config.json'), tokErr)
    : {};
  if (existsSync(at('special_tokens_map.json')))
    await copyFile(at('special_tokens_map.json'), join(outDir, 'special_tokens_map.json'));
  if (existsSync(at('tokenizer.json'))) await copyFile(at('tokenizer.json'), join(outDir, 'tokenizer.json'));
  else if (existsSync(at('vocab.txt'))) {
    const vocab = (await readFile(at('vocab.txt'), 'utf8')).split(/\r?\n/);
    if (vocab.at(-1) === '') vocab.pop();
    const json = bertTokenizerJson(vocab, {
      lowercase: config.do_lower_case !== false,
      stripAccents: typeof config.strip_accents === 'boolean' ? config.strip_accents : null,
      chineseChars: config.tokenize_chinese_chars !== false,
    });
    await writeFile(join(outDir, 'tokenizer.json'), JSON.stringify(json));
  } else {
    throw new TokenizerError(`${modelDir} has neither tokenizer.json nor vocab.txt; add one to export it.`);
  }
  // transformers.js picks the tokenizer class from here; BertTokenizer is what returns token_type_ids.
  const out = {
    do_lower_case: true,
    model_max_length: maxPositions,
    cls_token: '[CLS]',
    sep_token: '[SEP]',
    pad_token: '[PAD]',
    unk_token: '[UNK]',
    mask_token: '[MASK]',
    ...config,
    tokenizer_class: typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'BertTokenizer',
  };
  if (typeof out.model_max_length !== 'number' || out.model_max_length > maxPositions)
    out.model_max_length = maxPositions;
  await writeFile(join(outDir, 'tokenizer_config.json'), JSON.stringify(out, null, 2));
}

// ---------------------------------------------------------------------------------------------------

/** Reads config.json into the shape the graph needs (typed errors on anything unusable). */
export async function readBertConfig(
  configPath: string,
): Promise<{ raw: Record<string, unknown>; shape: BertShape }> {
  const raw = await readJson(configPath, (m, o) => new ConfigError(m, o));
  return { raw, shape: readBertShape(raw, configPath) };
}

/** Writes only `onnxPath` from a config and one safetensors file (e.g. golden fixtures without tokenizers). */
export async function writeBertOnnx(
  configPath: string,
  weightsPath: string,
  onnxPath: string,
  quantization: OnnxQuantization = 'none',
): Promise<void> {
  const { shape } = await readBertConfig(configPath);
  const weights = await readFile(weightsPath).catch((err) => {
    throw new WeightsError(`Cannot read ${weightsPath}: ${(err as Error).message}`, { cause: err });
  });
  await writeFile(onnxPath, buildBertOnnx(shape, weights, weightsPath, quantization));
}

/**
 * Exports `modelDir` (config.json, model.safetensors, tokenizer.json or vocab.txt) to `outDir` in the
 * layout transformers.js loads offline: config.json, tokenizer.json, tokenizer_config.json and
 * onnx/model.onnx (float32) and, with `quantized`, onnx/model_quantized.onnx (what transformers.js
 * loads for dtype 'q8'). Returns `outDir`, the folder to give transformers.js.
 */
export async function exportBertOnnx(
  modelDir: string,
  outDir: string,
  opts: { quantized?: boolean; reduceRange?: boolean } = {},
): Promise<string> {
  const configPath = join(modelDir, 'config.json');
  const { raw, shape } = await readBertConfig(configPath);
  await mkdir(join(outDir, 'onnx'), { recursive: true });
  await writeFile(join(outDir, 'config.json'), JSON.stringify({ ...raw, model_type: 'bert' }, null, 2));
  await writeTokenizer(modelDir, outDir, shape.maxPositions);
  const weights = join(modelDir, 'model.safetensors');
  await writeBertOnnx(configPath, weights, join(outDir, 'onnx', 'model.onnx'));
  const q8 = opts.reduceRange ? 'q8-reduce-range' : 'q8';
  if (opts.quantized)
    await writeBertOnnx(configPath, weights, join(outDir, 'onnx', 'model_quantized.onnx'), q8);
  return outDir;
}

/**
 * The export of `modelDir` under `cacheRoot` (default: the OS temp folder's mlx-rerank-bench), made
 * again only when the weights are newer than it (float32 and q8). Returns the folder for runTransformersJs.
 */
export async function cachedBertOnnx(
  modelDir: string,
  cacheRoot = join(tmpdir(), 'mlx-rerank-bench'),
): Promise<string> {
  const dir = resolve(modelDir);
  const outDir = join(cacheRoot, `onnx-${dir.replace(/[^A-Za-z0-9]+/g, '_').slice(-80)}`);
  const weights = join(dir, 'model.safetensors');
  const fresh = ['model.onnx', 'model_quantized.onnx'].every((f) => {
    const onnxFile = join(outDir, 'onnx', f);
    return (
      existsSync(onnxFile) && existsSync(weights) && statSync(onnxFile).mtimeMs >= statSync(weights).mtimeMs
    );
  });
  return fresh ? outDir : exportBertOnnx(dir, outDir, { quantized: true });
}
