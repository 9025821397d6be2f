/**
 * The few ONNX messages (onnx.proto) the bench's exporter writes, protobuf-encoded by hand: no onnx or
 * protobuf package is needed on the bench machines. A Graph collects nodes and initializers and
 * serialises a ModelProto.
 */
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
export const FLOAT = 1;
const INT8 = 3;
export const INT64 = 7;
export const BOOL = 9;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

type Attr = { kind: 'int'; v: number } | { kind: 'float'; v: number } | { kind: 'ints'; v: number[] };
export const int = (v: number): Attr => ({ kind: 'int', v });
export const float = (v: number): Attr => ({ kind: 'float', v });
export const ints = (v: number[]): Attr => ({ kind: 'ints', v });

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
export function valueInfo(name: string, elemType: number, dims: Array<number | string>): Pb {
  const shape = new Pb();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().string(2, d));
  const tensorType = new Pb().int(1, elemType).message(2, shape);
  return new Pb().string(1, name).message(2, new Pb().message(1, tensorType));
}

export class Graph {
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
    g.string(2, 'sequence_classification');
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
