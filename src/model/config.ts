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

function firstNumber(source: Record<string, unknown>, keys: string[]): number | undefined {
  for (const key of keys) {
    const value = source[key];
    if (typeof value === 'number' && Number.isFinite(value)) return value;
  }
  return undefined;
}

function tokenIds(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value)) return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v));
  return [];
}

export function readModelConfig(files: ModelFiles): ModelConfig {
  const { config, generationConfig, tokenizerConfig } = files;
  const need = (keys: string[], what: string): number => {
    const value = firstNumber(config, keys);
    if (value === undefined || value <= 0) {
      throw new ModelLoadError(`config.json: missing ${what} (one of ${keys.join(', ')})`);
    }
    return value;
  };
  const numLayers = need(['num_hidden_layers', 'n_layer', 'num_layers'], 'the number of layers');
  const numHeads = need(['num_attention_heads', 'n_head'], 'the number of attention heads');
  const hiddenSize = need(['hidden_size', 'n_embd', 'd_model'], 'the hidden size');
  const numKvHeads = firstNumber(config, ['num_key_value_heads']) ?? numHeads;
  const headDim = firstNumber(config, ['head_dim']) ?? hiddenSize / numHeads;
  const vocabSize = need(['vocab_size'], 'the vocabulary size');

  const fromConfig = firstNumber(config, ['max_position_embeddings', 'n_positions', 'n_ctx', 'max_sequence_length']);
  const fromTokenizer = firstNumber(tokenizerConfig, ['model_max_length']);
  const contextLength =
    fromConfig ?? (fromTokenizer !== undefined && fromTokenizer < UNSET_MAX_LENGTH ? fromTokenizer : undefined);
  if (contextLength === undefined) {
    throw new ModelLoadError('config.json: missing the context length (max_position_embeddings or n_positions)');
  }

  const eosTokenIds = tokenIds(generationConfig.eos_token_id ?? config.eos_token_id);
  const bos = tokenIds(generationConfig.bos_token_id ?? config.bos_token_id);
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
