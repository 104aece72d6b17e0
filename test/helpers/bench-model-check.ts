import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { decoderShape, writeDecoderGraph } from '../../bench/make-model.js';
import { llamaWeights } from '../../tools/gguf.js';
import { addNewKvOutputs } from '../../src/engine/thread/graph/new-kv-outputs.js';
import { addSlotAttention } from '../../src/engine/thread/graph/slot-attention.js';
import { editGraph, GRAPH_NODE } from '../../src/engine/thread/graph/onnx-proto.js';

export interface BenchModelCheck {
  /** Greedy ids of each prompt from the written graph. */
  greedy: number[][];
  /** Whether the engine's slot-attention edit takes the written graph. */
  takesSlots: boolean;
  nodes: number;
}

/** GGUF's names of a Llama layer's weights → the names the bench graph gives them. */
const BENCH_NAMES: [RegExp, string][] = [
  [/^token_embd\.weight$/, 'model.embed_tokens.weight'],
  [/^blk\.(\d+)\.attn_norm\.weight$/, 'model.layers.$1.input_layernorm.weight'],
  [/^blk\.(\d+)\.attn_(q|k|v)\.(weight|bias)$/, 'model.layers.$1.self_attn.$2_proj.$3'],
  [/^blk\.(\d+)\.attn_output\.weight$/, 'model.layers.$1.self_attn.o_proj.weight'],
  [/^blk\.(\d+)\.ffn_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight'],
  [/^blk\.(\d+)\.ffn_(gate|up|down)\.weight$/, 'model.layers.$1.mlp.$2_proj.weight'],
  [/^output_norm\.weight$/, 'model.norm.weight'],
  [/^output\.weight$/, 'lm_head.weight'],
];

/**
 * The bench's graph written for a fixture's config (model_type as given, or `qwen2` with q, k and v
 * biases of zero), its weights taken from the fixture's graph role by role, then run greedily with
 * its cache fed back: the written graph computes what the fixture's does only if every node is
 * where Hugging Face's model puts it.
 */
export async function run({ fixtureDir, prompts, newTokens, modelType }: { fixtureDir: string; prompts: number[][]; newTokens: number; modelType?: 'qwen2' }): Promise<BenchModelCheck> {
  const config = JSON.parse(readFileSync(join(fixtureDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const shape = decoderShape({ ...config, ...(modelType && { model_type: modelType }) });
  const { model, manifest } = writeDecoderGraph(shape);
  const byBenchName = new Map<string, Float32Array>();
  for (const [name, { values }] of llamaWeights(fixtureDir)) {
    const rule = BENCH_NAMES.find(([pattern]) => pattern.test(name));
    if (!rule) throw new Error(`no bench name for ${name}`);
    byBenchName.set(name.replace(rule[0], rule[1]), values);
  }
  const data = new Uint8Array(manifest.total_bytes);
  for (const tensor of manifest.tensors) {
    const values = byBenchName.get(tensor.name) ?? (tensor.name.endsWith('.bias') ? new Float32Array(tensor.length / 4) : undefined);
    if (!values || values.byteLength !== tensor.length) throw new Error(`${tensor.name}: ${values ? `${values.byteLength} bytes` : 'nothing'} for ${tensor.length}`);
    data.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), tensor.offset);
  }
  const dir = mkdtempSync(join(tmpdir(), 'bench-model-'));
  try {
    writeFileSync(join(dir, manifest.data_file), data);
    writeFileSync(join(dir, 'model.onnx'), model);
    const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
    const greedy: number[][] = [];
    for (const prompt of prompts) greedy.push(await decode(session, shape.layers, shape.kvHeads, shape.headDim, prompt, newTokens));
    await session.release();
    const edited = addNewKvOutputs(model);
    return { greedy, takesSlots: edited !== undefined && addSlotAttention(edited) !== undefined, nodes: countNodes(model) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function decode(session: ort.InferenceSession, layers: number, kvHeads: number, headDim: number, prompt: number[], newTokens: number): Promise<number[]> {
  const int64 = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), [1, values.length]);
  let past: Record<string, ort.Tensor> = {};
  for (let layer = 0; layer < layers; layer++) for (const kind of ['key', 'value']) past[`past_key_values.${layer}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, kvHeads, 0, headDim]);
  let tokens = prompt;
  let length = 0;
  const out: number[] = [];
  while (out.length < newTokens) {
    const positions = tokens.map((_, i) => length + i);
    length += tokens.length;
    const result = await session.run({ input_ids: int64(tokens), attention_mask: int64(Array(length).fill(1)), position_ids: int64(positions), ...past });
    const logits = result.logits!.data as Float32Array;
    const vocab = logits.length / tokens.length;
    const last = logits.subarray(logits.length - vocab);
    let best = 0;
    for (let id = 1; id < vocab; id++) if (last[id]! > last[best]!) best = id;
    out.push(best);
    tokens = [best];
    past = {};
    for (let layer = 0; layer < layers; layer++) for (const kind of ['key', 'value']) past[`past_key_values.${layer}.${kind}`] = result[`present.${layer}.${kind}`]!;
  }
  return out;
}

function countNodes(model: Uint8Array): number {
  let count = 0;
  editGraph(model, (fields) => {
    count = fields.filter((field) => field.number === GRAPH_NODE).length;
    return undefined;
  });
  return count;
}
