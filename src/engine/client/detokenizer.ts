/** Turns token ids into text. */
export interface TokenDecoder {
  decode(ids: readonly number[]): string;
}

/** Tokens of the prompt decoded along with the first new ones, so that the first piece decodes in context. */
const CONTEXT_TOKENS = 5;
const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * Decodes generated tokens one at a time into text deltas whose concatenation equals
 * decode(prompt + generated) minus decode(prompt). Every step decodes a short window that starts a
 * few tokens back, so tokenizers whose pieces depend on their neighbours (SentencePiece's leading
 * `▁`, byte fallback) come out right, and a delta that ends in a partial UTF-8 character is held
 * back until the character is complete.
 */
export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;

  constructor(
    private readonly decoder: TokenDecoder,
    promptIds: readonly number[],
  ) {
    this.ids = promptIds.slice(Math.max(0, promptIds.length - CONTEXT_TOKENS));
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** Adds one token; returns the text it completes (possibly empty). */
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const prefixText = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const fullText = this.decoder.decode(this.ids.slice(this.prefixOffset));
    if (fullText.length <= prefixText.length || fullText.endsWith(REPLACEMENT_CHARACTER)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return fullText.slice(prefixText.length);
  }

  /** At the end of generation: whatever is still held back, broken characters and all. */
  flush(): string {
    const prefixText = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const fullText = this.decoder.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return fullText.length > prefixText.length ? fullText.slice(prefixText.length) : '';
  }
}
