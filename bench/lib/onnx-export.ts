/**
 * Writes a Hugging Face BERT sequence classifier (config.json + model.safetensors) as a float32 ONNX
 * graph that transformers.js loads offline, so the bench can run transformers.js on the very weights
 * our engines run (no Python, torch or onnx package on the bench machines).
 *
 * The graph follows what `torch.onnx.export` emits for BertForSequenceClassification (MatMul + Add,
 * Reshape/Transpose heads, Div by sqrt(d), additive mask (1 - mask) * finfo.min, Softmax, erf GELU),
 * with LayerNormalization as one op (opset 17), so ONNX Runtime applies the fusions it applies to a
 * real export. The protobuf is encoded by hand (bench/lib/onnx-proto.ts).
 */

import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, TokenizerError, WeightsError } from '../../src/errors';
import { specFromConfig } from '../../src/model';
import type { NativeEngineOptions } from '../../src/native';
import { f16ToF32 } from '../../src/safetensors';
import { bertTokenizerJson } from '../../src/tokenizer/tokenizer-json';
import { readJsonFile } from '../../src/validate';
import { FLOAT, float, Graph, INT64, int, ints, valueInfo } from './onnx-proto';

export { bertTokenizerJson };

// ---------------------------------------------------------------------------------------------------
// config.json and safetensors

/** The model's shape: the fields the native engines take (src/native.ts), read by the package's reader. */
export type BertShape = NativeEngineOptions['spec'];

/** config.json of a model folder is a few KB; anything near this is not one. */
const MAX_CONFIG_BYTES = 4 << 20;

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

async function writeTokenizer(modelDir: string, outDir: string, maxPositions: number): Promise<void> {
  const at = (f: string) => join(modelDir, f);
  const config = existsSync(at('tokenizer_config.json'))
    ? ((await readJsonFile(
        at('tokenizer_config.json'),
        'tokenizer_config.json',
        MAX_CONFIG_BYTES,
        TokenizerError,
      )) as Record<string, unknown>)
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
  const raw = await readJsonFile(configPath, 'config.json', MAX_CONFIG_BYTES, ConfigError);
  try {
    return { raw: raw as Record<string, unknown>, shape: specFromConfig(raw) };
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${configPath}: ${err.message}`, { cause: err });
    throw err;
  }
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
