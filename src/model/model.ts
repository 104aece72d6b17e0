import { basename } from 'node:path';
import { ChatTemplate } from './chat-template.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { readModelFiles, type ModelFiles } from './files.js';
import { TextTokenizer } from './tokenizer.js';

/** Sampling defaults of the model's generation_config.json, used where a request leaves them out. */
export interface SamplingDefaults {
  temperature: number;
  topP: number;
}

/** Everything the server needs from a model directory, except the ONNX session (the engine's). */
export interface LoadedModel {
  /** The model id in the API. */
  id: string;
  files: ModelFiles;
  config: ModelConfig;
  tokenizer: TextTokenizer;
  chatTemplate: ChatTemplate;
  samplingDefaults: SamplingDefaults;
}

export interface LoadModelOptions {
  modelFile?: string;
  servedModelName?: string;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

export function loadModel(dir: string, options: LoadModelOptions = {}): LoadedModel {
  const files = readModelFiles(dir, options.modelFile);
  const tokenizer = new TextTokenizer(files);
  return {
    id: options.servedModelName ?? basename(files.dir),
    files,
    config: readModelConfig(files),
    tokenizer,
    chatTemplate: new ChatTemplate(files.tokenizerConfig, tokenizer),
    samplingDefaults: {
      temperature: numberOr(files.generationConfig.temperature, 1),
      topP: numberOr(files.generationConfig.top_p, 1),
    },
  };
}
