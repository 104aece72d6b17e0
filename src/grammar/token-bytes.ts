import type { GrammarVocabulary } from './vocabulary.js';

/**
 * The bytes each token stands for, for the tokens with any byte past ASCII (the others are
 * undefined): what keeps constrained output well-formed UTF-8 (see Utf8Processor).
 */
export type TokenBytes = (Uint8Array | undefined)[];

/** GPT-2's table from bytes to the printable characters its byte-level vocabulary is written in, reversed. */
function byteLevelDecoder(): Map<string, number> {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const decoder = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const code = printable.includes(b) ? b : 256 + extra++;
    decoder.set(String.fromCodePoint(code), b);
  }
  return decoder;
}

const encoder = new TextEncoder();

let byteLevelTable: Map<string, number> | undefined;

/** The bytes a vocabulary entry stands for, read as the vocabulary's kind says. */
export function pieceBytes(token: string, kind: GrammarVocabulary['kind']): Uint8Array {
  if (kind === 'byte_level') {
    const byteLevel = (byteLevelTable ??= byteLevelDecoder());
    const bytes: number[] = [];
    for (const char of token) {
      const byte = byteLevel.get(char);
      if (byte === undefined) return encoder.encode(token);
      bytes.push(byte);
    }
    return Uint8Array.from(bytes);
  }
  if (kind === 'byte_fallback') {
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
    if (byte) return Uint8Array.of(parseInt(byte[1]!, 16));
    return encoder.encode(token.replaceAll('▁', ' '));
  }
  return encoder.encode(token);
}

export function tokenBytes(vocabulary: GrammarVocabulary): TokenBytes {
  return vocabulary.tokens.map((token) => {
    if (token === '') return undefined;
    const bytes = pieceBytes(token, vocabulary.kind);
    return bytes.some((byte) => byte >= 0x80) ? bytes : undefined;
  });
}

/** Where a UTF-8 decoder stands: how many continuation bytes it still needs, and the range the next one must be in. */
export interface Utf8State {
  needed: number;
  low: number;
  high: number;
}

export const UTF8_START: Utf8State = { needed: 0, low: 0x80, high: 0xbf };

/**
 * The state after `bytes`, or undefined when they break UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). A token of ASCII bytes only leaves a finished character as it is.
 */
export function advanceUtf8(state: Utf8State, bytes: Uint8Array | undefined): Utf8State | undefined {
  if (bytes === undefined) return state.needed === 0 ? state : undefined;
  let { needed, low, high } = state;
  for (const byte of bytes) {
    if (needed > 0) {
      if (byte < low || byte > high) return undefined;
      needed--;
      low = 0x80;
      high = 0xbf;
      continue;
    }
    if (byte < 0x80) continue;
    if (byte >= 0xc2 && byte <= 0xdf) needed = 1;
    else if (byte >= 0xe0 && byte <= 0xef) {
      needed = 2;
      if (byte === 0xe0) low = 0xa0;
      if (byte === 0xed) high = 0x9f;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      needed = 3;
      if (byte === 0xf0) low = 0x90;
      if (byte === 0xf4) high = 0x8f;
    } else return undefined;
  }
  return { needed, low, high };
}
