import { ModelLoadError } from './errors.js';
import type { ModelFiles } from './files.js';

/** What the server needs to know about a model, read from config.json and generation_config.json. */
export interface ModelConfig {
  modelType: string;
  vocabSize: number;
  /** Longest sequence (prompt and completion) the model was trained for. */
  contextLength: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Token ids that end a generation. */
  eosTokenIds: number[];
  bosTokenId: number | undefined;
}

/** Tokenizers without a real limit store this huge sentinel as model_max_length. */
const UNSET_MAX_LENGTH = 1e12;

/** The first of `keys` that config.json sets, with its value. */
function firstSet(source: Record<string, unknown>, keys: string[]): [key: string, value: unknown] | undefined {
  for (const key of keys) {
    if (source[key] !== undefined && source[key] !== null) return [key, source[key]];
  }
  return undefined;
}

/** A size from config.json: a positive whole number, or a start-up error that names the field. */
function positiveInteger(source: Record<string, unknown>, keys: string[], file = 'config.json'): number | undefined {
  const found = firstSet(source, keys);
  if (!found) return undefined;
  const [key, value] = found;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ModelLoadError(`${file}: ${key} must be a positive whole number, got ${JSON.stringify(value)}`);
  }
  return value;
}

function tokenIds(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value)) return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v));
  return [];
}

/** config.json, with a multimodal model's `text_config` (where its language model's fields are) over the top level. */
function textConfig(config: Record<string, unknown>): Record<string, unknown> {
  const inner = config.text_config;
  return typeof inner === 'object' && inner !== null && !Array.isArray(inner) ? { ...config, ...(inner as Record<string, unknown>) } : config;
}

export function readModelConfig(files: Pick<ModelFiles, 'config' | 'generationConfig' | 'tokenizerConfig'>): ModelConfig {
  const { generationConfig, tokenizerConfig } = files;
  const config = textConfig(files.config);
  const need = (keys: string[], what: string): number => {
    const value = positiveInteger(config, keys);
    if (value === undefined) throw new ModelLoadError(`config.json: missing ${what} (one of ${keys.join(', ')})`);
    return value;
  };
  const numLayers = need(['num_hidden_layers', 'n_layer', 'num_layers'], 'the number of layers');
  const numHeads = need(['num_attention_heads', 'n_head'], 'the number of attention heads');
  const hiddenSize = need(['hidden_size', 'n_embd', 'd_model'], 'the hidden size');
  const numKvHeads = positiveInteger(config, ['num_key_value_heads']) ?? numHeads;
  const headDim = positiveInteger(config, ['head_dim']) ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) throw new ModelLoadError(`config.json: the hidden size ${hiddenSize} is not a multiple of the ${numHeads} attention heads`);
  const vocabSize = need(['vocab_size'], 'the vocabulary size');

  const fromConfig = positiveInteger(config, ['max_position_embeddings', 'n_positions', 'n_ctx', 'max_sequence_length']);
  const maxLength = tokenizerConfig.model_max_length;
  const fromTokenizer = typeof maxLength === 'number' && maxLength < UNSET_MAX_LENGTH ? positiveInteger(tokenizerConfig, ['model_max_length'], 'tokenizer_config.json') : undefined;
  const contextLength = fromConfig ?? fromTokenizer;
  if (contextLength === undefined) {
    throw new ModelLoadError('config.json: missing the context length (max_position_embeddings or n_positions)');
  }

  const tokenField = (key: 'eos_token_id' | 'bos_token_id') => {
    const [file, value] = generationConfig[key] !== undefined && generationConfig[key] !== null ? ['generation_config.json', generationConfig[key]] : ['config.json', config[key]];
    const ids = tokenIds(value);
    const bad = ids.find((id) => id < 0 || id >= vocabSize);
    if (bad !== undefined) throw new ModelLoadError(`${file}: ${key} ${bad} is not a token id of the vocabulary of ${vocabSize}`);
    return ids;
  };
  const eosTokenIds = tokenField('eos_token_id');
  const bos = tokenField('bos_token_id');
  return {
    modelType: typeof config.model_type === 'string' ? config.model_type : 'unknown',
    vocabSize,
    contextLength,
    numLayers,
    numKvHeads,
    headDim,
    eosTokenIds: [...new Set(eosTokenIds)],
    bosTokenId: bos[0],
  };
}
