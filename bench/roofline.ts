/**
 * The roofline of a decode step: a decode step reads every weight of the graph's products once
 * (the embedding tables only at the rows it looks up) and each row's keys and values, so a runner's
 * tokens/s times the bytes it reads per token is the memory bandwidth it uses. Next to the
 * bandwidth this machine's cores reach copying memory, measured in the same run, that says how far
 * each runner is from the limit of its format.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { readModelConfig } from '../src/model/config.js';
import { readModelFiles } from '../src/model/files.js';
import { INT4_BLOCK } from '../src/engine/thread/graph/weight-quantization.js';
import { Q4_0_BLOCK, Q4_0_BLOCK_BYTES, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from '../tools/gguf.js';
import type { ModelReport } from './bench-model.js';
import { NEW_TOKENS, PROMPT_TOKENS } from './common.js';

/** Bytes per weight of each storage format, scales included (blocks of 32 for int4 and the ggml formats). */
export const BYTES_PER_WEIGHT = {
  f32: 4,
  /** DynamicQuantizeMatMul: one byte, a scale per column (negligible). */
  int8: 1,
  /** MatMulNBits: half a byte, a float32 scale per block. */
  int4: 0.5 + 4 / INT4_BLOCK,
  /** ggml q8_0: a byte a weight and a float16 scale per block. */
  q8_0: Q8_0_BLOCK_BYTES / Q8_0_BLOCK,
  /** ggml q4_0: half a byte a weight and a float16 scale per block. */
  q4_0: Q4_0_BLOCK_BYTES / Q4_0_BLOCK,
} as const;
export type WeightFormat = keyof typeof BYTES_PER_WEIGHT;

export interface ModelShape {
  /** Weights of the products a decode step runs (every 2-D weight but the embedding tables). */
  productWeights: number;
  layers: number;
  kvHeads: number;
  headDim: number;
}

const EMBEDDING_TABLE = /embed_tokens|\bwte\b|\bwpe\b|embed_positions/;

/** The shape of a bench model: its product weights from weights-manifest.json, its attention as the server reads config.json. */
export function modelShape(dir: string): ModelShape {
  const manifest = JSON.parse(readFileSync(join(dir, 'weights-manifest.json'), 'utf8')) as { tensors: { name: string; dims: number[] }[] };
  const { numLayers, numKvHeads, headDim } = readModelConfig(readModelFiles(dir));
  const productWeights = manifest.tensors
    .filter((tensor) => tensor.dims.length === 2 && !EMBEDDING_TABLE.test(tensor.name))
    .reduce((sum, tensor) => sum + tensor.dims[0]! * tensor.dims[1]!, 0);
  return { productWeights, layers: numLayers, kvHeads: numKvHeads, headDim };
}

/** Bytes one decode step of `batch` rows reads: the weights once, and each row's `past` positions of keys and values. */
export function bytesPerStep(shape: ModelShape, format: WeightFormat, batch: number, past: number, kvBytesPerValue: number): { weights: number; kv: number } {
  return {
    weights: shape.productWeights * BYTES_PER_WEIGHT[format],
    kv: batch * shape.layers * 2 * shape.kvHeads * shape.headDim * past * kvBytesPerValue,
  };
}

const COPY_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const from = new Float64Array(workerData.elements).fill(1);
const to = new Float64Array(workerData.elements);
to.set(from);
parentPort.on('message', (copies) => {
  const start = performance.now();
  for (let i = 0; i < copies; i++) (i % 2 ? from : to).set(i % 2 ? to : from);
  parentPort.postMessage(performance.now() - start);
});
parentPort.postMessage('ready');
`;

/**
 * Memory bandwidth in bytes/s: `threads` threads each copying a buffer of `mebibytes` (read and
 * write both counted), all at once; the best of `rounds`.
 */
export async function probeBandwidth(threads: number, mebibytes = 256, copies = 8, rounds = 3): Promise<number> {
  const elements = (mebibytes * 2 ** 20) / 8;
  const workers = Array.from({ length: threads }, () => new Worker(COPY_WORKER, { eval: true, workerData: { elements } }));
  try {
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
    let best = 0;
    for (let round = 0; round < rounds; round++) {
      const start = performance.now();
      await Promise.all(
        workers.map((worker) => {
          const done = new Promise((resolve) => worker.once('message', resolve));
          worker.postMessage(copies);
          return done;
        }),
      );
      const seconds = (performance.now() - start) / 1000;
      best = Math.max(best, (threads * copies * 2 * elements * 8) / seconds);
    }
    return best;
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

export interface RooflineRunner {
  label: string;
  format: WeightFormat;
  batch: number;
  /** Tokens decoded per second over all rows. */
  decodeTokensPerSecond: number;
  kvBytesPerValue: number;
}

/**
 * The roofline lines of one model: its bytes per decode step in each runner's format, and each
 * runner's decode rate as memory traffic and as a share of `bandwidth`. `past`: the positions a
 * row holds on average while decoding.
 */
export function rooflineLines(model: string, shape: ModelShape, runners: readonly RooflineRunner[], bandwidth: number, past: number): string[] {
  const gb = (bytes: number) => (bytes / 1e9).toFixed(1);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
  const lines = [`${model}: ${(shape.productWeights / 1e6).toFixed(0)}M weights in its products; a row's keys and values at ${past} positions: ${mb(bytesPerStep(shape, 'f32', 1, past, 4).kv)} MB in float32`];
  const labelWidth = Math.max(...runners.map((runner) => runner.label.length));
  for (const runner of runners) {
    const { weights, kv } = bytesPerStep(shape, runner.format, runner.batch, past, runner.kvBytesPerValue);
    const steps = runner.decodeTokensPerSecond / runner.batch;
    const traffic = (weights + kv) * steps;
    lines.push(
      `  ${runner.label.padEnd(labelWidth)}  batch ${String(runner.batch).padStart(2)}: ${mb(weights)} MB weights (${runner.format}) + ${mb(kv)} MB KV per step,` +
        ` ${runner.decodeTokensPerSecond.toFixed(1)} tok/s = ${steps.toFixed(1)} steps/s = ${gb(traffic)} GB/s, ${((100 * traffic) / bandwidth).toFixed(0)}% of the probe`,
    );
  }
  return lines;
}

/** The roofline lines of a bench model's report: the raw loop, ortserve in the format its flags give, and each llama.cpp variant. */
export function modelRoofline(report: ModelReport, bandwidth: number): string[] {
  if (!existsSync(join(report.dir, 'weights-manifest.json'))) return [`${report.model}: no weights-manifest.json to count its weights from`];
  // The last --weights given wins, as `--weights int4` or `--weights=int4`.
  const served = report.serverFlags.reduce<string | undefined>((value, flag, i, flags) => (flag === '--weights' ? flags[i + 1] : flag.startsWith('--weights=') ? flag.slice('--weights='.length) : value), undefined);
  const exportedInt4 = report.servedLayout === 'int4-export';
  const serverFormat: WeightFormat = served === 'int8' || served === 'int4' ? served : exportedInt4 ? 'int4' : 'f32';
  const runners: RooflineRunner[] = [
    ...report.raw.map(({ median }) => ({ label: 'raw onnxruntime loop', format: 'f32' as const, batch: median.batch, decodeTokensPerSecond: median.decodeTokensPerSecond, kvBytesPerValue: 4 })),
    ...report.server.map(({ median }) => ({
      label: `ortserve${exportedInt4 ? ' int4 export' : serverFormat === 'f32' ? '' : ` --weights ${serverFormat}`}`,
      format: serverFormat,
      batch: median.clients,
      decodeTokensPerSecond: (median.clients * 1000) / median.itlP50Ms,
      kvBytesPerValue: 4,
    })),
  ];
  if (report.llamaCpp.measured) {
    for (const variant of report.llamaCpp.variants) {
      const format: WeightFormat = variant.key === 'q8_0' || variant.key === 'q4_0' ? variant.key : 'f32';
      for (const { median } of variant.batches) {
        runners.push({ label: variant.label, format, batch: median.batch, decodeTokensPerSecond: median.decodeTokensPerSecond, kvBytesPerValue: 2 });
      }
    }
  }
  return rooflineLines(report.model, modelShape(report.dir), runners, bandwidth, PROMPT_TOKENS + NEW_TOKENS / 2);
}
