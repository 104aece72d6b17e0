import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { ModelConfig } from './config.js';
import { isExternalDataOf } from './files.js';
import { isDirectory } from '../util/fs.js';

/** What a model's memory is counted by against the server's budget. */
export interface ModelFootprint {
  /** The graph and its external data files, as they are on disk. */
  weightBytes: number;
  /** The KV cache at the most tokens the engine admits, plus the prefix cache's, in float32. */
  kvBytes: number;
}

/** The graph file and the external data files beside it (`model.onnx_data`, `_data_1`, …, `model.onnx.data`). */
function weightFiles(modelPath: string): string[] {
  const folder = dirname(modelPath);
  const graph = basename(modelPath);
  const data = isDirectory(folder) ? readdirSync(folder).filter((name) => isExternalDataOf(graph, name)) : [];
  return [modelPath, ...data.map((name) => join(folder, name))];
}

/**
 * The memory a loaded model may take: its weights, and its KV cache at capacity (`kvTokens`, the
 * engine's admission bound) with the prefix cache's positions. An upper bound of what the engine
 * holds, not a measurement: the KV buffers grow as sequences need them.
 */
export function modelFootprint(modelPath: string, config: Pick<ModelConfig, 'numLayers' | 'numKvHeads' | 'headDim'>, kvTokens: number, prefixCacheTokens: number): ModelFootprint {
  const weightBytes = weightFiles(modelPath).reduce((sum, file) => sum + statSync(file).size, 0);
  const bytesPerToken = config.numLayers * 2 * config.numKvHeads * config.headDim * 4;
  return { weightBytes, kvBytes: (kvTokens + prefixCacheTokens) * bytesPerToken };
}
