import { isObject, type JsonObject as Json } from '../util/json.js';

/**
 * What a grammar engine needs to know of a tokenizer: each token's text as the vocabulary stores
 * it, how those strings decode to bytes, and whether the tokenizer puts a space before the text.
 * Read from tokenizer.json, so that it needs no tokenizer library of its own.
 */
export interface GrammarVocabulary {
  /** Token id → the vocabulary's string; special tokens are empty, so no grammar can produce them. */
  tokens: string[];
  /** `byte_level`: GPT-2's byte-to-unicode strings; `byte_fallback`: SentencePiece `▁` and `<0xNN>` tokens; `raw`: plain text. */
  kind: 'byte_level' | 'byte_fallback' | 'raw';
  /** The tokenizer writes a `▁` before the text (a Metaspace pre-tokenizer or a `Prepend("▁")` normalizer). */
  prependsSpace: boolean;
}

/** A component and, for a `Sequence`, the components inside it. */
function components(value: unknown, key: string): Json[] {
  if (!isObject(value)) return [];
  const inner = value[key];
  if (value.type === 'Sequence' && Array.isArray(inner)) return inner.filter(isObject).flatMap((item) => components(item, key));
  return [value];
}

export function vocabularyKind(tokenizerJson: Json): GrammarVocabulary['kind'] {
  const decoders = components(tokenizerJson.decoder, 'decoders');
  if (decoders.some((decoder) => decoder.type === 'ByteLevel')) return 'byte_level';
  const model = isObject(tokenizerJson.model) ? tokenizerJson.model : {};
  if (model.byte_fallback === true || decoders.some((decoder) => decoder.type === 'ByteFallback')) return 'byte_fallback';
  return 'raw';
}

function prependsSpace(tokenizerJson: Json): boolean {
  const metaspace = components(tokenizerJson.pre_tokenizer, 'pretokenizers').find((item) => item.type === 'Metaspace');
  if (metaspace) return metaspace.prepend_scheme !== 'never' && metaspace.add_prefix_space !== false;
  return components(tokenizerJson.normalizer, 'normalizers').some((item) => item.type === 'Prepend' && item.prepend === '▁');
}

/** The grammar vocabulary of a tokenizer.json, `size` entries long (the model's vocabulary may be larger than the tokenizer's). */
export function grammarVocabulary(tokenizerJson: Json, size: number): GrammarVocabulary {
  const tokens = new Array<string>(size).fill('');
  const model = isObject(tokenizerJson.model) ? tokenizerJson.model : {};
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    // Unigram: [piece, score] pairs in id order.
    vocab.forEach((entry: unknown, id) => {
      if (id < size && Array.isArray(entry) && typeof entry[0] === 'string') tokens[id] = entry[0];
    });
  } else if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) if (typeof id === 'number' && id >= 0 && id < size) tokens[id] = token;
  }
  const added = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens.filter(isObject) : [];
  for (const token of added) {
    const { id, content, special } = token;
    if (typeof id !== 'number' || id < 0 || id >= size || typeof content !== 'string') continue;
    tokens[id] = special === true ? '' : content;
  }
  return { tokens, kind: vocabularyKind(tokenizerJson), prependsSpace: prependsSpace(tokenizerJson) };
}
