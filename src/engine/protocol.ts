import type { GrammarSpec } from '../grammar/grammar-spec.js';
import type { EngineSettings } from '../options.js';
import type { GrammarVocabulary } from '../grammar/vocabulary.js';
/**
 * Messages between the server (main thread) and the engine thread, and the types both sides read.
 * Only token ids cross. This file imports from neither side.
 */

export type Device = EngineSettings['device'];

export type QuantizedWeights = Exclude<WeightFormat, 'as-exported'>;

/** How the weights are stored: as the graph has them, or quantized to 8 or 4 bits as it loads (see thread/graph/weight-quantization.ts). */
export type WeightFormat = EngineSettings['weights'];

/** How attention reads the past: from slots the engine writes in place (see thread/graph/slot-attention.ts), or as the graph was exported. */
export type AttentionFormat = EngineSettings['attention'];

/** What the decoder graph itself fixes, as the engine found it; undefined where it fixes nothing. */
export interface GraphLimits {
  /** Rows of the graph's position table. */
  positions?: number;
  /** The last dimension of its logits. */
  vocabSize?: number;
  /** Its attention takes every row as unpadded (GroupQueryAttention): only rows of one length can run together. */
  unpaddedRows?: boolean;
}


export type FinishReason = 'stop' | 'length';

/** A token's log-probability and the most likely alternatives as [token id, log-probability]. */
export interface TokenLogprob {
  logprob: number;
  top: [number, number][];
}

/**
 * What the choices of one prompt share. The engine prefills the prompt once and forks its KV rows
 * into one sequence per choice.
 */
export interface PromptRequest {
  /** The request the sequence belongs to (its prompts and choices share one); batch slots are shared fairly between requests. */
  group: number;
  /** Prompts reuse and fill only the prefix cache of their own partition (one per API key, say). */
  cachePartition: string;
  promptIds: number[];
  /** 0: the prompt is only scored (with `promptLogprobs`), nothing is generated. */
  maxTokens: number;
  temperature: number;
  topP: number;
  /** Sample from this many most likely tokens only; absent: all. */
  topK?: number;
  /** Seeds the sampler; without one, every run differs. */
  seed?: number;
  /** Token ids that end the sequence (EOS); they are reported but are not part of the text. */
  stopTokenIds: number[];
  presencePenalty: number;
  frequencyPenalty: number;
  /** [token id, bias] pairs added to the logits before sampling. */
  logitBias: [number, number][];
  /** Report each token's log-probability with this many alternatives; absent: no log-probabilities. */
  logprobs?: number;
  /** Report the prompt tokens' log-probabilities too (all but the first), with this many alternatives. */
  promptLogprobs?: number;
  /** The output must follow this grammar (already checked by a GrammarProbe); a stop token ends it. */
  grammar?: GrammarSpec;
  /** With a grammar, for a model that thinks aloud: the grammar applies once the thinking has ended. */
  reasoning?: ReasoningGate;
}

/** Where a reply's thinking ends, for a grammar that applies only after it. */
export interface ReasoningGate {
  /** The prompt ends inside the thinking (its generation prompt opened it). */
  startsInside: boolean;
  /** The text that ends the thinking (`</think>`), and its token where it is one. */
  end: string;
  endTokenId?: number;
  /** The token that opens the thinking, where it is one: the reply may begin with it instead of the grammar's first token. */
  startTokenId?: number;
}

/** One choice of a prompt: a sequence of its own. */
export interface Choice {
  id: number;
  /** Separates the random streams of the choices of one seeded request. */
  seedStream: number;
}

/** One sequence: its prompt's settings and its own choice. */
export interface SequenceRequest extends PromptRequest, Choice {}

export interface TokenUpdate {
  id: number;
  /** Absent on the one update of a sequence that only scores its prompt (`maxTokens` 0). */
  tokenId?: number;
  logprob?: TokenLogprob;
  /** On a sequence's first token, when asked for: log-probabilities of prompt tokens 2…L. */
  promptLogprobs?: TokenLogprob[];
  /** Set on a sequence's last token. */
  finishReason?: FinishReason;
  /** On a sequence's first token: prompt tokens whose KV came from the prefix cache (absent: none). */
  cachedTokens?: number;
}

/** What config.json says of the model's shape; the graph may say otherwise, and then wins. */
export interface DeclaredShape {
  contextLength: number;
  vocabSize: number;
  /** For shapes the graph leaves symbolic. */
  numKvHeads: number;
  headDim: number;
}

/** The limits the engine serves, from its graph and config.json (the graph wins): the one source of them for both threads. */
export interface ServedLimits {
  contextLength: number;
  vocabSize: number;
}

export interface WorkerConfig {
  modelPath: string;
  declared: DeclaredShape;
  settings: EngineSettings;
}

/** One prompt of a request, and the choices generated from it. */
export interface PromptSubmission {
  request: PromptRequest;
  choices: Choice[];
}

export type ToWorker =
  /** A request's prompts, each with its choices, in one message: they reach the batcher together and start together. */
  | { type: 'submit'; prompts: PromptSubmission[] }
  | { type: 'cancel'; id: number }
  /** Sent once, right after `ready`: the tokenizer's vocabulary for the grammars, as long as the served vocabulary. */
  | { type: 'vocabulary'; vocabulary: GrammarVocabulary }
  /** Stop after the step under way, release the session and exit. */
  | { type: 'close' };

/** How full the engine is, after a step or when it goes idle. */
export interface EngineStats {
  /** Sequences waiting for a batch slot. */
  waiting: number;
  /** Sequences in the running batch, the one being prefilled included. */
  running: number;
  /** Tokens held in the KV cache by the running sequences. */
  kvTokens: number;
  /** Prompt positions held in the prefix cache. */
  prefixCacheTokens: number;
  /** Tokens the running sequences may hold in the KV cache together (`--max-kv-tokens`, else max batch × context). */
  kvCapacity: number;
}

export type FromWorker =
  | { type: 'ready'; served: ServedLimits; graph: GraphLimits; rewrites: string[] }
  | { type: 'failed'; message: string }
  | { type: 'tokens'; updates: TokenUpdate[] }
  /** After each decode step (`batchSize` rows), and with `batchSize` 0 when the engine goes idle. */
  | { type: 'step'; batchSize: number; stats: EngineStats }
  | { type: 'error'; ids: number[]; message: string };
