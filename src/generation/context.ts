import type { Engine } from '../engine/client/engine.js';
import type { LoadedModel } from '../model/model.js';
import type { RequestLimits } from '../options.js';
import type { Preprocessor } from '../preprocess/preprocessor.js';

/** Watches generations for the metrics; times are in seconds. */
export interface GenerationObserver {
  /** From the start of a choice's generation to its first text. */
  firstToken(seconds: number): void;
  /** Between two consecutive pieces of a choice's text. */
  interToken(seconds: number): void;
  /** A request's generation ended: its prompt tokens (`cachedTokens` of them from the prefix cache) and those generated. */
  finished(promptTokens: number, completionTokens: number, cachedTokens: number): void;
}

/** Everything a route needs to serve the model. */
export interface ServingContext {
  model: LoadedModel;
  /** Tokenizes prompts and renders chat templates off the HTTP thread. */
  preprocessor: Preprocessor;
  engine: Engine;
  /** Identifies the model and the server build that answered. */
  systemFingerprint: string;
  limits: RequestLimits;
  /** 0: no deadline. */
  requestTimeoutMs: number;
  /** A header whose value partitions the prefix cache instead of the API key. */
  prefixCachePartitionHeader?: string;
  observer: GenerationObserver;
}
