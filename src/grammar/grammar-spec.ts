/**
 * A grammar the output must follow, as it travels to the engine: a JSON schema, or a structural tag
 * (text with tagged JSON parts, as tool calls are). Both are JSON text, so that equal grammars have
 * equal keys in a cache.
 */
export type GrammarSpec =
  | { kind: 'json_schema'; schema: string }
  | { kind: 'structural_tag'; tag: string };

/** Any JSON object: `response_format: {"type": "json_object"}`. */
export const ANY_JSON_OBJECT: GrammarSpec = { kind: 'json_schema', schema: '{"type":"object"}' };

export const jsonSchemaGrammar = (schema: unknown): GrammarSpec => ({ kind: 'json_schema', schema: JSON.stringify(schema) });

/** A structural tag in xgrammar's format (`{"type": "structural_tag", "format": …}`). */
export const structuralTagGrammar = (format: unknown): GrammarSpec => ({ kind: 'structural_tag', tag: JSON.stringify({ type: 'structural_tag', format }) });
