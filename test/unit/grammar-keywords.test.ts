import { readFileSync } from 'node:fs';
import { SchemaChecker } from '../../src/grammar/schema-checker.js';
import { jsonSchemaGrammar } from '../../src/grammar/grammar-spec.js';
import { grammarVocabulary } from '../../src/grammar/vocabulary.js';
import { GrammarProbe } from '../../src/grammar/xgrammar.js';
import { fixture } from '../helpers/server.js';

/**
 * What docs/structured-output.md says the grammar enforces while decoding, and what is only checked afterwards,
 * each tried on the grammar itself: outputs that match the schema, and outputs that do not.
 */

const tokenizerJson = JSON.parse(readFileSync(fixture('models/tiny-llama/tokenizer.json'), 'utf8')) as Record<string, unknown>;
const probe = new GrammarProbe(grammarVocabulary(tokenizerJson, 2304));

type Case = [keyword: string, schema: Record<string, unknown>, valid: string[], invalid: string[]];

const ENFORCED: Case[] = [
  ['type', { type: 'integer' }, ['5'], ['"5"', '5.5']],
  ['type (a list)', { type: ['integer', 'null'] }, ['1', 'null'], ['"a"']],
  ['properties, required', { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }, ['{"a": 1}'], ['{}', '{"a": "x"}']],
  ['additionalProperties', { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: false }, ['{"a": 1}'], ['{"a": 1, "b": 2}']],
  ['items', { type: 'array', items: { type: 'boolean' } }, ['[true, false]'], ['[1]']],
  ['prefixItems', { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], items: false }, ['[1, "a"]'], ['["a", 1]']],
  ['minItems, maxItems', { type: 'array', items: { type: 'integer' }, minItems: 1, maxItems: 2 }, ['[1]', '[1, 2]'], ['[]', '[1, 2, 3]']],
  ['enum', { enum: ['a', 1] }, ['"a"', '1'], ['"b"']],
  ['const', { const: 'x' }, ['"x"'], ['"y"']],
  ['anyOf', { anyOf: [{ type: 'integer' }, { type: 'null' }] }, ['1', 'null'], ['"a"']],
  ['oneOf (as anyOf)', { oneOf: [{ type: 'integer' }, { type: 'string' }] }, ['1', '"a"'], ['null']],
  ['$ref, $defs (recursive)', { $defs: { n: { type: 'object', properties: { next: { anyOf: [{ $ref: '#/$defs/n' }, { type: 'null' }] } }, required: ['next'] } }, $ref: '#/$defs/n' }, ['{"next": {"next": null}}'], ['{"next": 1}']],
  ['definitions', { definitions: { x: { type: 'integer' } }, $ref: '#/definitions/x' }, ['3'], ['"a"']],
  ['minLength, maxLength', { type: 'string', minLength: 2, maxLength: 3 }, ['"ab"', '"abc"'], ['"a"', '"abcd"', '"a\u0001"']],
  ['pattern', { type: 'string', pattern: '^[a-z]+\\d$' }, ['"ab1"'], ['"ab"', '"1"']],
  ['format: date', { type: 'string', format: 'date' }, ['"2024-01-31"'], ['"hello"']],
  ['format: time', { type: 'string', format: 'time' }, ['"10:00:00Z"'], ['"hello"']],
  ['format: date-time', { type: 'string', format: 'date-time' }, ['"2024-01-31T10:00:00Z"'], ['"hello"']],
  ['format: email', { type: 'string', format: 'email' }, ['"a@b.co"'], ['"hello"']],
  ['format: uuid', { type: 'string', format: 'uuid' }, ['"123e4567-e89b-12d3-a456-426614174000"'], ['"hello"']],
  ['format: uri', { type: 'string', format: 'uri' }, ['"http://x.org/a"'], ['"hello world"']],
  ['strings: no control characters', { type: 'string' }, ['"a b"'], ['"a\u0001"']],
];

/** Keywords the grammar lets through broken: the check after decoding is what finds them out. */
const CHECKED_AFTERWARDS: Case[] = [
  ['minimum', { type: 'integer', minimum: 5 }, ['7'], ['3']],
  ['exclusiveMinimum', { type: 'number', exclusiveMinimum: 5 }, ['6'], ['5']],
  ['multipleOf', { type: 'integer', multipleOf: 3 }, ['6'], ['7']],
  ['not', { not: { type: 'integer' } }, ['"a"'], ['1']],
  ['uniqueItems', { type: 'array', items: { type: 'integer' }, uniqueItems: true }, ['[1, 2]'], ['[1, 1]']],
  ['if, then', { if: { type: 'integer' }, then: { minimum: 3 } }, ['5'], ['1']],
];

describe('enforced while decoding', () => {
  it.each(ENFORCED)('%s', async (_, schema, valid, invalid) => {
    const grammar = jsonSchemaGrammar(schema);
    for (const text of valid) expect([text, await probe.accepts(grammar, text)]).toEqual([text, true]);
    for (const text of invalid) expect([text, await probe.accepts(grammar, text)]).toEqual([text, false]);
  });
});

describe('checked only afterwards', () => {
  const checker = new SchemaChecker();
  const schemaMismatch = (schema: object, value: unknown) => checker.mismatch(JSON.stringify(schema), value);
  it.each(CHECKED_AFTERWARDS)('%s: the grammar lets a breaking output through, the schema check does not', async (_, schema, valid, invalid) => {
    const grammar = jsonSchemaGrammar(schema);
    for (const text of valid) expect(schemaMismatch(schema, JSON.parse(text))).toBeUndefined();
    for (const text of invalid) {
      expect([text, await probe.accepts(grammar, text)]).toEqual([text, true]);
      expect(schemaMismatch(schema, JSON.parse(text))).toEqual(expect.any(String));
    }
  });
});
