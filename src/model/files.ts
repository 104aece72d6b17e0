import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ModelLoadError } from './errors.js';

/** Where the parts of a model directory live on disk. */
export interface ModelFiles {
  dir: string;
  /** The ONNX decoder graph. */
  modelPath: string;
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/** Layouts accepted for the graph, in order: Optimum's export and ONNX model repositories. */
const GRAPH_LOCATIONS = ['', 'onnx'];

export function readJsonFile(path: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ModelLoadError(`${what}: cannot read ${path}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`${what}: ${path} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelLoadError(`${what}: ${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

function findGraph(dir: string, modelFile: string): string {
  const tried: string[] = [];
  for (const sub of GRAPH_LOCATIONS) {
    const candidate = join(dir, sub, modelFile);
    tried.push(candidate);
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  throw new ModelLoadError(`model graph not found: looked for ${tried.join(' and ')}`);
}

/**
 * Locates and reads the files of a Hugging Face Optimum style model directory.
 * The graph may sit at the top (`model.onnx`) or under `onnx/`; `modelFile` picks another graph
 * such as `model_quantized.onnx`. `generation_config.json` is optional, the rest is required.
 */
export function readModelFiles(modelDir: string, modelFile = 'model.onnx'): ModelFiles {
  const dir = resolve(modelDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelLoadError(`model directory not found: ${dir}`);
  }
  if (basename(modelFile) !== modelFile) {
    throw new ModelLoadError(`model file must be a file name inside the model directory, got ${modelFile}`);
  }
  const required = (name: string) => {
    const path = join(dir, name);
    if (!existsSync(path)) throw new ModelLoadError(`${name} is missing from ${dir}`);
    return readJsonFile(path, name);
  };
  const modelPath = findGraph(dir, modelFile);
  const config = required('config.json');
  const tokenizerJson = required('tokenizer.json');
  const tokenizerConfig = required('tokenizer_config.json');
  const generationPath = join(dir, 'generation_config.json');
  const generationConfig = existsSync(generationPath) ? readJsonFile(generationPath, 'generation_config.json') : {};
  return { dir, modelPath, config, generationConfig, tokenizerJson, tokenizerConfig };
}
