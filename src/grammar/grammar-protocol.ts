import type { GrammarSpec } from './grammar-spec.js';
import type { GrammarVocabulary } from './vocabulary.js';

/**
 * Messages between the engine thread and a grammar thread, which compiles grammars and keeps the
 * matchers of the constrained sequences. A thread handles its messages in order.
 */

export interface GrammarThreadData {
  vocabulary: GrammarVocabulary;
  /** Where masks are written: word 0 counts the answered mask requests, then one mask per row. */
  masks: SharedArrayBuffer;
  /** Int32 words in one mask. */
  maskWords: number;
}

export type ToGrammarThread =
  | { type: 'compile'; key: string; spec: GrammarSpec }
  | { type: 'forget'; key: string }
  | { type: 'open'; matcher: number; key: string; stopTokenIds: number[] }
  /** The tokens the sequences took, in order. */
  | { type: 'accept'; tokens: [matcher: number, tokenId: number][] }
  | { type: 'close'; matchers: number[] }
  /** Write the next-token mask of each matcher into row i, then set word 0 to `request`. */
  | { type: 'masks'; matchers: number[]; request: number };

export type FromGrammarThread =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  /** With the memory the grammar is estimated to hold. */
  | { type: 'compiled'; key: string; bytes: number }
  | { type: 'refused'; key: string; message: string };
