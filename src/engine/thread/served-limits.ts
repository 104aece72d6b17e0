import type { DeclaredShape, GraphLimits, ServedLimits } from '../protocol.js';

/**
 * The limits the engine serves: config.json's, unless the graph fixes another. Positions past the
 * graph's position table cannot run, and the logits' last dimension is the vocabulary the sampler
 * and the grammars see, whatever config.json says.
 */
export function servedLimits(declared: Pick<DeclaredShape, 'contextLength' | 'vocabSize'>, graph: GraphLimits): ServedLimits {
  return {
    contextLength: Math.min(declared.contextLength, graph.positions ?? Infinity),
    vocabSize: graph.vocabSize ?? declared.vocabSize,
  };
}
