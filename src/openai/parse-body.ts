import type { z } from 'zod';
import { tooDeepPath } from '../util/json-depth.js';
import { catalogueError, invalidRequest, limitExceeded, type OpenAIError } from '../errors.js';

type Issue = z.core.$ZodIssue;

const EXPECTED: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean',
  object: 'an object',
  array: 'an array',
  record: 'an object',
};

/** What kind of JSON value was sent, in words; never the value itself. */
function kindOf(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'an array';
  if (typeof input === 'number') return Number.isFinite(input) ? (Number.isInteger(input) ? 'an integer' : 'a number with a fraction') : 'a number too large to represent';
  return typeof input === 'object' ? 'an object' : `a ${typeof input}`;
}

/** The 400 that names what is wrong with the field `param` ('' for the body itself). */
function describe(issue: Issue, param: string): OpenAIError {
  const subject = param ? `'${param}'` : 'The request body';
  switch (issue.code) {
    case 'invalid_type': {
      // Inputs are reported (see parseBody), so only a field that is absent has none.
      if (issue.input === undefined && param) return catalogueError('missing_required_parameter', [param], param);
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      if (!param) return invalidRequest(`The request body must be a JSON object, not ${kindOf(issue.input)}.`, param || null, 'invalid_type');
      return invalidRequest(`Invalid type for ${subject}: expected ${expected}, but got ${kindOf(issue.input)}.`, param || null, 'invalid_type');
    }
    case 'too_big': {
      const limit = issue.origin === 'array' ? `at most ${issue.maximum} items` : issue.origin === 'string' ? `at most ${issue.maximum} characters` : `at most ${issue.maximum}`;
      return invalidRequest(`Invalid value for ${subject}: must be ${limit}.`, param || null, 'invalid_value');
    }
    case 'too_small': {
      const limit = issue.origin === 'array' ? `at least ${issue.minimum} item(s)` : issue.origin === 'string' ? `at least ${issue.minimum} character(s)` : `at least ${issue.minimum}`;
      return invalidRequest(`Invalid value for ${subject}: must be ${limit}.`, param || null, 'invalid_value');
    }
    case 'invalid_value':
      return invalidRequest(`Invalid value for ${subject}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}.`, param || null, 'invalid_value');
    case 'invalid_key':
      return invalidRequest(`Invalid key ${subject}: ${issue.issues[0]?.message ?? issue.message}.`, param || null, 'invalid_value');
    case 'invalid_union':
      return invalidRequest(`Invalid value for ${subject}: ${issue.message}.`, param || null, 'invalid_value');
    default:
      return invalidRequest(`Invalid value for ${subject}: ${issue.message}.`, param || null, 'invalid_value');
  }
}

/** OpenAI's name for a nested field: `messages[0].content`. */
function paramName(path: readonly PropertyKey[]): string {
  return path.reduce<string>((name, key) => (typeof key === 'number' ? `${name}[${key}]` : name ? `${name}.${String(key)}` : String(key)), '');
}

/** Validates a request body (or, with `at`, the field of one that `at` names); the first problem becomes a 400 that names the field. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown, at = ''): z.infer<T> {
  const result = schema.safeParse(body, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const inner = paramName(issue.path);
  const param = at && inner && !inner.startsWith('[') ? `${at}.${inner}` : at + inner;
  throw describe(issue, param);
}

/** Path segments named in a depth error: enough to find the field, not the whole descent. */
const NAMED_SEGMENTS = 4;

/**
 * Refuses a JSON value nested deeper than `maxDepth` (a 400 naming where), before any part of the
 * server walks it: templates, schema compilers and worker messages all recurse, and a deep enough
 * value overflows their stacks. `at` names the value within the request.
 */
export function checkJsonDepth(value: unknown, maxDepth: number, at = ''): void {
  const path = tooDeepPath(value, maxDepth);
  if (!path) return;
  const inner = paramName(path.slice(0, NAMED_SEGMENTS));
  const param = at && inner && !inner.startsWith('[') ? `${at}.${inner}` : at + inner;
  throw limitExceeded(param || 'body', `'${param || 'the request body'}' nests arrays and objects more than ${maxDepth} levels deep`, 'max-json-depth');
}
