/**
 * Writes a Hugging Face sequence classifier (config.json + model.safetensors) of each family the engines
 * run (BERT, XLM-RoBERTa, ELECTRA, ModernBERT) as a float32 ONNX graph that transformers.js loads offline,
 * so the bench can run transformers.js on the very weights our engines run (no Python, torch or onnx
 * package on the bench machines).
 *
 * The graphs follow what `torch.onnx.export` emits for the transformers classes (MatMul + Add,
 * Reshape/Transpose heads, Div by sqrt(d), additive mask, Softmax, erf GELU), with LayerNormalization as
 * one op (opset 17), so ONNX Runtime applies the fusions it applies to a real export. The protobuf is
 * encoded by hand (bench/lib/onnx-proto.ts).
 */

import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, InputError, TokenizerError, WeightsError } from '../../src/errors';
import { specFromConfig } from '../../src/model';
import { f16ToF32, parseSafetensorsHeader } from '../../src/safetensors';
import { bertTokenizerJson } from '../../src/tokenizer/tokenizer-json';
import type { ModelSpec } from '../../src/types';
import { readJsonFile } from '../../src/validate';
import { BOOL, FLOAT, float, Graph, INT64, int, ints, valueInfo } from './onnx-proto';

export { bertTokenizerJson };

// ---------------------------------------------------------------------------------------------------
// config.json and safetensors

/** The model's description as the package reads it from config.json (src/model.ts). */
export type ModelShape = ModelSpec;

/** config.json of a model folder is a few KB; anything near this is not one. */
const MAX_CONFIG_BYTES = 4 << 20;

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

interface Safetensors {
  get(name: string, shape: number[]): Float32Array;
}

/** Parses and validates the header; tensors are converted to float32 when asked for. */
function parseSafetensors(file: Buffer, source: string): Safetensors {
  const { entries, dataStart } = parseSafetensorsHeader(file, source);
  const dataLen = file.length - dataStart;
  return {
    get(name, shape) {
      const t = entries.get(name);
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

/**
 * Builds the ONNX model bytes of the spec's sequence classifier over the given weights: BERT,
 * XLM-RoBERTa, ELECTRA (bertLikeGraph) or ModernBERT (modernBertGraph). Only BERT has the q8 variant.
 */
export function buildOnnx(
  shape: ModelShape,
  weights: Buffer,
  source = 'model.safetensors',
  quantization: OnnxQuantization = 'none',
): Buffer {
  if (quantization !== 'none' && shape.architecture !== 'bert') {
    throw new InputError(`The q8 export is BERT's only; this model is ${shape.architecture}.`);
  }
  const st = parseSafetensors(weights, source);
  return shape.architecture === 'modernbert'
    ? modernBertGraph(shape, st)
    : bertLikeGraph(shape, st, quantization);
}

/** The float32 graph's building blocks over one safetensors file (torch names and layouts). */
function blocks(g: Graph, st: Safetensors, eps: number) {
  const w = (name: string, dims: number[]): string => g.init(name, dims, st.get(name, dims));
  return {
    w,
    /** x @ W^T (+ b): MatMul with the transposed torch [out, in] weight, as torch exports Linear. */
    linear(x: string, prefix: string, inDim: number, outDim: number, bias = true): string {
      const wT = transpose(st.get(`${prefix}.weight`, [outDim, inDim]), outDim, inDim);
      const y = g.op('MatMul', [x, g.init(`${prefix}.weight_T`, [inDim, outDim], wT)]);
      return bias ? g.op('Add', [y, w(`${prefix}.bias`, [outDim])]) : y;
    },
    /** Rows [from, from + rows) of a torch [out, in] weight as a MatMul (Wqkv's and Wi's parts). */
    linearRows(x: string, name: string, dims: [number, number], from: number, rows: number): string {
      const all = st.get(name, dims);
      const part = all.subarray(from * dims[1], (from + rows) * dims[1]);
      const wT = transpose(part, rows, dims[1]);
      return g.op('MatMul', [x, g.init(`${name}_T_${from}`, [dims[1], rows], wT)]);
    },
    /** The head's Linear on pooled [B, H] rows: Gemm with the torch weight, as torch exports it. */
    gemm(x: string, prefix: string, inDim: number, outDim: number, bias = true, output?: string): string {
      const inputs = [x, w(`${prefix}.weight`, [outDim, inDim])];
      if (bias) inputs.push(w(`${prefix}.bias`, [outDim]));
      return g.op('Gemm', inputs, { transB: int(1) }, output);
    },
    layerNorm(x: string, prefix: string, width: number, bias = true): string {
      const inputs = [x, w(`${prefix}.weight`, [width])];
      if (bias) inputs.push(w(`${prefix}.bias`, [width]));
      return g.op('LayerNormalization', inputs, { axis: int(-1), epsilon: float(eps) });
    },
  };
}

/** [B, S] attention_mask -> [B, 1, 1, S] bool: which keys are real tokens. */
function keyMask(g: Graph): string {
  return g.op('Cast', [g.op('Unsqueeze', ['attention_mask', g.int64s('axes_1_2', [1, 2])])], {
    to: int(BOOL),
  });
}

/** Softmax attention of [B, NH, S, DH] q (scaled), k, v under an additive bias; returns [B, S, H]. */
function attend(g: Graph, q: string, k: string, v: string, bias: string, H: number, DH: number): string {
  const kT = g.op('Transpose', [k], { perm: ints([0, 1, 3, 2]) });
  const scores = g.op('Add', [
    g.op('Div', [g.op('MatMul', [q, kT]), g.scalar('sqrt_head_dim', Math.sqrt(DH))]),
    bias,
  ]);
  const probs = g.op('Softmax', [scores], { axis: int(-1) });
  const ctx = g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: ints([0, 2, 1, 3]) });
  return g.op('Reshape', [ctx, g.int64s('merged_shape', [0, 0, H])]);
}

/** [B, S, H] -> [B, NH, S, DH]. */
function heads(g: Graph, t: string, NH: number, DH: number): string {
  return g.op('Transpose', [g.op('Reshape', [t, g.int64s('heads_shape', [0, 0, NH, DH])])], {
    perm: ints([0, 2, 1, 3]),
  });
}

const FINFO_MIN = -3.4028234663852886e38;

/** 0 where `allowed`, float32's lowest elsewhere (transformers' masked_fill: no -inf, no NaN rows). */
function maskBias(g: Graph, allowed: string): string {
  return g.op('Where', [allowed, g.scalar('zero_f32', 0), g.scalar('finfo_min', FINFO_MIN)]);
}

/**
 * BertForSequenceClassification, XLMRobertaForSequenceClassification and ElectraForSequenceClassification,
 * as `torch.onnx.export` emits them (MatMul + Add, Reshape/Transpose heads, Div by sqrt(d), Softmax, erf
 * GELU, LayerNormalization as one op). XLM-R: position ids from the input ids (RoBERTa's
 * create_position_ids_from_input_ids: pad_token_id + cumulative count of non-padding tokens), no type
 * ids input (one type row), head dense -> tanh -> out_proj on <s>. ELECTRA: embeddings of width
 * embedding_size (embeddings_project maps them when it differs), head dense -> GELU -> out_proj on [CLS].
 */
function bertLikeGraph(shape: ModelShape, st: Safetensors, quantization: OnnxQuantization): Buffer {
  const { hiddenSize: H, intermediateSize: I, numHeads: NH, numLabels: L } = shape;
  const family = shape.architecture;
  const base = { bert: 'bert', 'xlm-roberta': 'roberta', electra: 'electra', modernbert: 'model' }[family];
  const E = shape.arch.embeddingSize;
  const DH = H / NH;
  const g = new Graph();
  const b = blocks(g, st, shape.layerNormEps);
  const { w } = b;
  const q8 = quantization !== 'none';
  const reduceRange = quantization === 'q8-reduce-range';
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
    if (!q8) return b.linear(x, prefix, inDim, outDim);
    const wT = transpose(st.get(`${prefix}.weight`, [outDim, inDim]), outDim, inDim);
    const qw = qWeight(`${prefix}.weight_T`, [inDim, outDim], wT);
    let xq = quantizedInputs.get(x);
    if (!xq) {
      xq = g.opN('DynamicQuantizeLinear', [x], 3);
      quantizedInputs.set(x, xq);
    }
    const [xv, xs, xz] = xq as [string, string, string];
    const mm = g.op('MatMulInteger', [xv, qw.q, xz, qw.zero]);
    const scaled = g.op('Mul', [g.op('Cast', [mm], { to: int(FLOAT) }), g.op('Mul', [xs, qw.scale])]);
    return g.op('Add', [scaled, w(`${prefix}.bias`, [outDim])]);
  };
  const embedding = (name: string, dims: number[], ids: string): string => {
    if (!q8) return g.op('Gather', [w(name, dims), ids]);
    const qw = qWeight(name, dims, st.get(name, dims));
    return g.op('DequantizeLinear', [g.op('Gather', [qw.q, ids]), qw.scale, qw.zero]);
  };

  const emb = `${base}.embeddings`;
  const words = embedding(`${emb}.word_embeddings.weight`, [shape.vocabSize, E], 'input_ids');
  const posName = `${emb}.position_embeddings.weight`;
  const posRows = shape.maxPositions + shape.arch.positionOffset;
  let positions: string;
  if (shape.arch.positionPadId >= 0) {
    // RoBERTa: padding_idx + cumsum(ids != padding_idx) * (ids != padding_idx).
    const pad = g.int64s('pad_id', [shape.arch.positionPadId], []);
    const real = g.op('Cast', [g.op('Not', [g.op('Equal', ['input_ids', pad])])], { to: int(INT64) });
    const count = g.op('CumSum', [real, g.int64s('axis1_i64', [1], [])]);
    const ids = g.op('Add', [g.op('Mul', [count, real]), pad]);
    positions = g.op('Gather', [w(posName, [posRows, E]), ids]);
  } else {
    // BERT / ELECTRA: positions 0..S-1 are a slice of the table (the default absolute position ids).
    const seqLen = g.op('Slice', [
      g.op('Shape', ['input_ids']),
      g.int64s('one_i64', [1]),
      g.int64s('two_i64', [2]),
    ]);
    const posTable = q8 ? qWeight(posName, [posRows, E], st.get(posName, [posRows, E])) : null;
    const sliced = g.op('Slice', [
      posTable ? posTable.q : w(posName, [posRows, E]),
      g.int64s('zero_i64', [0]),
      seqLen,
      g.int64s('axis0_i64', [0]),
    ]);
    positions = posTable ? g.op('DequantizeLinear', [sliced, posTable.scale, posTable.zero]) : sliced;
  }
  const typeName = `${emb}.token_type_embeddings.weight`;
  const withTypes = shape.typeVocabSize > 1;
  // One type row (XLM-R): every token adds it, and the graph takes no token_type_ids.
  const types = withTypes
    ? embedding(typeName, [shape.typeVocabSize, E], 'token_type_ids')
    : g.init(`${typeName}_row0`, [E], st.get(typeName, [1, E]));
  let x = b.layerNorm(g.op('Add', [g.op('Add', [words, positions]), types]), `${emb}.LayerNorm`, E);
  if (E !== H) x = b.linear(x, `${base}.embeddings_project`, E, H);

  // transformers' extended attention mask: (1 - mask) * finfo(float32).min, broadcast over heads and queries.
  const mask4 = g.op('Cast', [g.op('Unsqueeze', ['attention_mask', g.int64s('axes_1_2', [1, 2])])], {
    to: int(FLOAT),
  });
  const maskAdd = g.op('Mul', [
    g.op('Sub', [g.scalar('one_f32', 1), mask4]),
    g.scalar('finfo_min', FINFO_MIN),
  ]);

  for (let l = 0; l < shape.numLayers; l++) {
    const p = `${base}.encoder.layer.${l}`;
    const q = heads(g, linear(x, `${p}.attention.self.query`, H, H), NH, DH);
    const k = heads(g, linear(x, `${p}.attention.self.key`, H, H), NH, DH);
    const v = heads(g, linear(x, `${p}.attention.self.value`, H, H), NH, DH);
    const attn = linear(attend(g, q, k, v, maskAdd, H, DH), `${p}.attention.output.dense`, H, H);
    const x1 = b.layerNorm(g.op('Add', [attn, x]), `${p}.attention.output.LayerNorm`, H);
    const ffn = linear(
      activation(g, linear(x1, `${p}.intermediate.dense`, H, I), shape.hiddenAct),
      `${p}.output.dense`,
      I,
      H,
    );
    x = b.layerNorm(g.op('Add', [ffn, x1]), `${p}.output.LayerNorm`, H);
  }

  // The head on token 0: BERT's pooler (tanh) then classifier; the others' classifier.dense -> act -> out_proj.
  const cls = g.op('Gather', [x, g.int64s('token0', [0], [])], { axis: int(1) });
  if (family === 'bert') {
    const pooled = g.op('Tanh', [b.gemm(cls, 'bert.pooler.dense', H, H)]);
    b.gemm(pooled, 'classifier', H, L, true, 'logits');
  } else {
    const dense = b.gemm(cls, 'classifier.dense', H, H);
    const act =
      shape.arch.headAct === 'tanh' ? g.op('Tanh', [dense]) : activation(g, dense, shape.arch.headAct);
    b.gemm(act, 'classifier.out_proj', H, L, true, 'logits');
  }
  const names = ['input_ids', 'attention_mask', ...(withTypes ? ['token_type_ids'] : [])];
  const inputs = names.map((n) => valueInfo(n, INT64, ['batch_size', 'sequence_length']));
  return g.toModel(inputs, [valueInfo('logits', FLOAT, ['batch_size', L])], 17);
}

/**
 * ModernBertForSequenceClassification as transformers runs it on a padded batch (eager / sdpa, no
 * unpadding): token embeddings -> norm; per layer pre-norm attention (layer 0 without attn_norm) with
 * rotary positions 0..S-1 (cos / sin of position x inv_freq, the global theta on every
 * global_attn_every_n_layers-th layer, the local theta on the others), the others also masked to the
 * window |i - j| <= local_attention / 2 (computed in the graph from the positions), and a GeGLU MLP
 * (Wi's first half through the activation, times its second half); final norm; pooling of token 0 or
 * the mean of the real tokens; head dense -> act -> norm; classifier. Biases and norm biases as the
 * config says (none in the released models).
 */
function modernBertGraph(shape: ModelShape, st: Safetensors): Buffer {
  const { hiddenSize: H, intermediateSize: I, numHeads: NH, numLabels: L } = shape;
  const a = shape.arch;
  const DH = H / NH;
  const g = new Graph();
  const b = blocks(g, st, shape.layerNormEps);
  const { w } = b;

  let x = b.layerNorm(
    g.op('Gather', [w('model.embeddings.tok_embeddings.weight', [shape.vocabSize, H]), 'input_ids']),
    'model.embeddings.norm',
    H,
    a.normBias,
  );

  // Positions 0..S-1, as int64 (the window) and float32 [S, 1] (the rotary angles).
  const seqLen = g.op('Gather', [g.op('Shape', ['input_ids']), g.int64s('one_scalar', [1], [])]);
  const pos = g.op('Range', [g.int64s('zero_scalar', [0], []), seqLen, g.int64s('one_step', [1], [])]);
  const posF = g.op('Unsqueeze', [g.op('Cast', [pos], { to: int(FLOAT) }), g.int64s('axes_1', [1])]);
  // cos / sin of [S, DH] angles: torch's inv_freq = 1 / theta^(2i / DH) in float32, repeated twice.
  const rope = (theta: number, tag: string) => {
    const inv = Float32Array.from({ length: DH / 2 }, (_, i) => 1 / theta ** ((2 * i) / DH));
    const freqs = g.op('Mul', [posF, g.init(`inv_freq_${tag}`, [1, DH / 2], inv)]);
    const angles = g.op('Concat', [freqs, freqs], { axis: int(-1) });
    return { cos: g.op('Cos', [angles]), sin: g.op('Sin', [angles]) };
  };
  const ropeGlobal = rope(a.ropeTheta, 'global');
  const ropeLocal = rope(a.ropeLocalTheta, 'local');
  const halves = g.int64s('rope_halves', [DH / 2, DH / 2]);
  const rotate = (t: string, r: { cos: string; sin: string }): string => {
    const [x1, x2] = g.opN('Split', [t, halves], 2, { axis: int(-1) }) as [string, string];
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: int(-1) });
    return g.op('Add', [g.op('Mul', [t, r.cos]), g.op('Mul', [rotated, r.sin])]);
  };

  const keys = keyMask(g);
  const globalBias = maskBias(g, keys);
  const distance = g.op('Abs', [
    g.op('Sub', [
      g.op('Unsqueeze', [pos, g.int64s('axes_1', [1])]),
      g.op('Unsqueeze', [pos, g.int64s('axes_0', [0])]),
    ]),
  ]);
  const inWindow = g.op('LessOrEqual', [
    distance,
    g.int64s('half_window', [Math.floor(a.localWindow / 2)], []),
  ]);
  const localBias = maskBias(g, g.op('And', [keys, inWindow]));

  for (let l = 0; l < shape.numLayers; l++) {
    const p = `model.layers.${l}`;
    const global = a.localWindow === 0 || l % a.globalEvery === 0;
    const r = global ? ropeGlobal : ropeLocal;
    const h = l === 0 ? x : b.layerNorm(x, `${p}.attn_norm`, H, a.normBias);
    const part = (i: number) => {
      const y = b.linearRows(h, `${p}.attn.Wqkv.weight`, [3 * H, H], i * H, H);
      if (!a.attentionBias) return y;
      const bias = st.get(`${p}.attn.Wqkv.bias`, [3 * H]).subarray(i * H, (i + 1) * H);
      return g.op('Add', [y, g.init(`${p}.attn.Wqkv.bias_${i}`, [H], bias)]);
    };
    const q = rotate(heads(g, part(0), NH, DH), r);
    const k = rotate(heads(g, part(1), NH, DH), r);
    const v = heads(g, part(2), NH, DH);
    const ctx = attend(g, q, k, v, global ? globalBias : localBias, H, DH);
    x = g.op('Add', [x, b.linear(ctx, `${p}.attn.Wo`, H, H, a.attentionBias)]);
    const m = b.layerNorm(x, `${p}.mlp_norm`, H, a.normBias);
    const wi = (i: number) => {
      const y = b.linearRows(m, `${p}.mlp.Wi.weight`, [2 * I, H], i * I, I);
      if (!a.mlpBias) return y;
      const bias = st.get(`${p}.mlp.Wi.bias`, [2 * I]).subarray(i * I, (i + 1) * I);
      return g.op('Add', [y, g.init(`${p}.mlp.Wi.bias_${i}`, [I], bias)]);
    };
    const glu = g.op('Mul', [activation(g, wi(0), shape.hiddenAct), wi(1)]);
    x = g.op('Add', [x, b.linear(glu, `${p}.mlp.Wo`, I, H, a.mlpBias)]);
  }
  x = b.layerNorm(x, 'model.final_norm', H, a.normBias);

  let pooled: string;
  if (a.pooling === 'cls') pooled = g.op('Gather', [x, g.int64s('token0', [0], [])], { axis: int(1) });
  else {
    const maskF = g.op('Cast', ['attention_mask'], { to: int(FLOAT) });
    const sum = g.op(
      'ReduceSum',
      [g.op('Mul', [x, g.op('Unsqueeze', [maskF, g.int64s('axes_2', [2])])]), g.int64s('axes_1', [1])],
      {
        keepdims: int(0),
      },
    );
    pooled = g.op('Div', [sum, g.op('ReduceSum', [maskF, g.int64s('axes_1', [1])], { keepdims: int(1) })]);
  }
  const dense = b.gemm(pooled, 'head.dense', H, H, a.headBias);
  const act = a.headAct === 'tanh' ? g.op('Tanh', [dense]) : activation(g, dense, a.headAct);
  b.gemm(b.layerNorm(act, 'head.norm', H, a.normBias), 'classifier', H, L, true, 'logits');
  const inputs = ['input_ids', 'attention_mask'].map((n) =>
    valueInfo(n, INT64, ['batch_size', 'sequence_length']),
  );
  return g.toModel(inputs, [valueInfo('logits', FLOAT, ['batch_size', L])], 17);
}

function activation(g: Graph, x: string, act: ModelShape['hiddenAct']): string {
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

async function writeTokenizer(modelDir: string, outDir: string, shape: ModelShape): Promise<void> {
  const maxPositions = shape.maxPositions;
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
  // A WordPiece family's file may lack the BERT defaults; the others' files name their own tokens.
  const wordpiece = shape.architecture === 'bert' || shape.architecture === 'electra';
  const out = {
    ...(wordpiece
      ? {
          do_lower_case: true,
          cls_token: '[CLS]',
          sep_token: '[SEP]',
          pad_token: '[PAD]',
          unk_token: '[UNK]',
          mask_token: '[MASK]',
        }
      : {}),
    model_max_length: maxPositions,
    ...config,
    tokenizer_class:
      typeof config.tokenizer_class === 'string'
        ? config.tokenizer_class
        : wordpiece
          ? 'BertTokenizer'
          : 'PreTrainedTokenizerFast',
  };
  if (typeof out.model_max_length !== 'number' || out.model_max_length > maxPositions)
    out.model_max_length = maxPositions;
  await writeFile(join(outDir, 'tokenizer_config.json'), JSON.stringify(out, null, 2));
}

// ---------------------------------------------------------------------------------------------------

/** Reads config.json into the shape the graph needs (typed errors on anything unusable). */
export async function readModelConfig(
  configPath: string,
): Promise<{ raw: Record<string, unknown>; shape: ModelShape }> {
  const raw = await readJsonFile(configPath, 'config.json', MAX_CONFIG_BYTES, ConfigError);
  try {
    return { raw: raw as Record<string, unknown>, shape: specFromConfig(raw) };
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${configPath}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Writes only `onnxPath` from a config and one safetensors file (e.g. golden fixtures without tokenizers). */
export async function writeOnnx(
  configPath: string,
  weightsPath: string,
  onnxPath: string,
  quantization: OnnxQuantization = 'none',
): Promise<void> {
  const { shape } = await readModelConfig(configPath);
  const weights = await readFile(weightsPath).catch((err) => {
    throw new WeightsError(`Cannot read ${weightsPath}: ${(err as Error).message}`, { cause: err });
  });
  await writeFile(onnxPath, buildOnnx(shape, weights, weightsPath, quantization));
}

/**
 * Exports `modelDir` (config.json, model.safetensors, tokenizer.json or vocab.txt) to `outDir` in the
 * layout transformers.js loads offline: config.json, tokenizer.json, tokenizer_config.json and
 * onnx/model.onnx (float32) and, with `quantized`, onnx/model_quantized.onnx (what transformers.js
 * loads for dtype 'q8'). Returns `outDir`, the folder to give transformers.js.
 */
export async function exportOnnx(
  modelDir: string,
  outDir: string,
  opts: { quantized?: boolean; reduceRange?: boolean } = {},
): Promise<string> {
  const configPath = join(modelDir, 'config.json');
  const { raw, shape } = await readModelConfig(configPath);
  await mkdir(join(outDir, 'onnx'), { recursive: true });
  await writeFile(
    join(outDir, 'config.json'),
    JSON.stringify({ ...raw, model_type: shape.modelType }, null, 2),
  );
  await writeTokenizer(modelDir, outDir, shape);
  const weights = join(modelDir, 'model.safetensors');
  await writeOnnx(configPath, weights, join(outDir, 'onnx', 'model.onnx'));
  const q8 = opts.reduceRange ? 'q8-reduce-range' : 'q8';
  if (opts.quantized) await writeOnnx(configPath, weights, join(outDir, 'onnx', 'model_quantized.onnx'), q8);
  return outDir;
}

/**
 * The export of `modelDir` under `cacheRoot` (default: the OS temp folder's mlx-rerank-bench), made
 * again only when the weights are newer than it (float32, and q8 for BERT). Returns the folder for
 * runTransformersJs.
 */
export async function cachedOnnx(
  modelDir: string,
  cacheRoot = join(tmpdir(), 'mlx-rerank-bench'),
): Promise<string> {
  const dir = resolve(modelDir);
  const outDir = join(cacheRoot, `onnx-${dir.replace(/[^A-Za-z0-9]+/g, '_').slice(-80)}`);
  const weights = join(dir, 'model.safetensors');
  const { shape } = await readModelConfig(join(dir, 'config.json'));
  const quantized = shape.architecture === 'bert';
  const fresh = ['model.onnx', ...(quantized ? ['model_quantized.onnx'] : [])].every((f) => {
    const onnxFile = join(outDir, 'onnx', f);
    return (
      existsSync(onnxFile) && existsSync(weights) && statSync(onnxFile).mtimeMs >= statSync(weights).mtimeMs
    );
  });
  return fresh ? outDir : exportOnnx(dir, outDir, { quantized });
}
