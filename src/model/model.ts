import { basename } from 'node:path';
import { ChatTemplate } from './chat-template.js';
import { readModelConfig, type ModelConfig } from './config.js';
import { detectToolCallFormat, type ToolCallFormat, type ToolCallParserName } from '../tool-calls/formats.js';
import { detectReasoningFormat, REASONING_FORMATS, type ReasoningFormat, type ReasoningParser } from '../reasoning/formats.js';
import { ModelLoadError } from './errors.js';
import { readModelFiles, type Dtype, type ModelFiles } from './files.js';
import { TextTokenizer } from './tokenizer.js';
import type { GraphLimits, ServedLimits } from '../engine/protocol.js';

/** Sampling defaults of the model's generation_config.json, used where a request leaves them out. */
export interface SamplingDefaults {
  temperature: number;
  topP: number;
  /** 0: no top-k, as vLLM takes it when generation_config.json names none. */
  topK: number;
}

/** Everything the server needs from a model directory, except the ONNX session (the engine's). */
export interface LoadedModel {
  /** The model id in the API. */
  id: string;
  /** Other names a request may give for it (`--served-model-name` given more than once). */
  aliases: readonly string[];
  files: ModelFiles;
  config: ModelConfig;
  tokenizer: TextTokenizer;
  chatTemplate: ChatTemplate;
  /** How the model writes tool calls, from its chat template. */
  toolCallFormat: ToolCallFormat;
  /** The markers of the model's thinking (from its chat template, or `--reasoning-parser`); none for a model that does not think aloud. */
  reasoningFormat?: ReasoningFormat;
  samplingDefaults: SamplingDefaults;
}

export interface LoadModelOptions {
  modelFile?: string;
  /** The graph by transformers.js' dtype names (`q4` → `model_q4.onnx`). */
  dtype?: Dtype;
  /** The id in the API, then aliases a request may also name; none: the directory's name. */
  servedModelNames?: readonly string[];
  /** `auto`: the markers the chat template writes, if any. */
  reasoningParser?: ReasoningParser;
  /** `auto`: the format the chat template's markers show. */
  toolCallParser?: ToolCallParserName;
}

function reasoningFormat(chatTemplate: ChatTemplate, parser: LoadModelOptions['reasoningParser'] = 'auto'): ReasoningFormat | undefined {
  if (parser === 'none') return undefined;
  if (parser === 'auto') return chatTemplate.isFallback ? undefined : detectReasoningFormat(chatTemplate.source);
  return REASONING_FORMATS[parser];
}

/** A sampling default from generation_config.json: absent, or a number within the range a request may ask for. */
function samplingDefault(config: Record<string, unknown>, key: string, max: number, fallback: number): number {
  const value = config[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !(value >= 0 && value <= max)) {
    throw new ModelLoadError(`generation_config.json: ${key} must be a number from 0 to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The model as the engine serves it: where the engine found that its graph fixes another context or
 * vocabulary than config.json gives, the engine's limits are taken, with a warning.
 */
export function servedModel(model: LoadedModel, served: ServedLimits, graph: GraphLimits = {}): { model: LoadedModel; warnings: string[] } {
  const warnings: string[] = [];
  const config = { ...model.config };
  if (served.contextLength !== config.contextLength) {
    warnings.push(`config.json gives a context of ${config.contextLength} tokens, but the graph's position table has ${served.contextLength} rows: serving a context of ${served.contextLength}`);
    config.contextLength = served.contextLength;
  }
  if (served.vocabSize !== config.vocabSize) {
    warnings.push(`config.json gives a vocabulary of ${config.vocabSize} tokens, but the graph's logits have ${served.vocabSize}: using ${served.vocabSize}`);
    config.vocabSize = served.vocabSize;
    const outside = config.eosTokenIds.filter((id) => id >= served.vocabSize);
    if (outside.length > 0) throw new ModelLoadError(`eos_token_id ${outside[0]} is not a token id of the graph's vocabulary of ${served.vocabSize}`);
  }
  if (graph.unpaddedRows) {
    warnings.push(
      "the graph's GroupQueryAttention runs as exported (see the graph edits logged at load for why it was not rewritten): it takes every row as unpadded, so prompts of one length run together, and others wait for the batch to finish",
    );
  }
  return { model: { ...model, config }, warnings };
}

export function loadModel(dir: string, options: LoadModelOptions = {}): LoadedModel {
  const files = readModelFiles(dir, options.modelFile, options.dtype);
  const tokenizer = new TextTokenizer(files);
  const chatTemplate = new ChatTemplate(files.tokenizerConfig, tokenizer);
  const reasoning = reasoningFormat(chatTemplate, options.reasoningParser);
  return {
    id: options.servedModelNames?.[0] ?? basename(files.dir),
    aliases: options.servedModelNames?.slice(1) ?? [],
    files,
    config: readModelConfig(files),
    tokenizer,
    chatTemplate,
    toolCallFormat: detectToolCallFormat(chatTemplate, options.toolCallParser),
    ...(reasoning && { reasoningFormat: reasoning }),
    samplingDefaults: {
      temperature: samplingDefault(files.generationConfig, 'temperature', 2, 1),
      topP: samplingDefault(files.generationConfig, 'top_p', 1, 1),
      topK: Math.trunc(samplingDefault(files.generationConfig, 'top_k', Number.MAX_SAFE_INTEGER, 0)),
    },
  };
}
