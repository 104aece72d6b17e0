import type { z } from 'zod';
import { invalidRequest } from './errors.js';

type Issue = z.core.$ZodIssue;

function describe(issue: Issue, param: string): { message: string; code: string } {
  const subject = param ? `'${param}'` : 'The request body';
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return { message: `Missing required parameter: ${subject}.`, code: 'missing_required_parameter' };
      return { message: `Invalid type for ${subject}: expected ${issue.expected}.`, code: 'invalid_type' };
    case 'too_big': {
      const limit = issue.origin === 'array' ? `at most ${issue.maximum} items` : issue.origin === 'string' ? `at most ${issue.maximum} characters` : `at most ${issue.maximum}`;
      return { message: `Invalid value for ${subject}: must be ${limit}.`, code: 'invalid_value' };
    }
    case 'too_small': {
      const limit = issue.origin === 'array' ? `at least ${issue.minimum} item(s)` : issue.origin === 'string' ? `at least ${issue.minimum} character(s)` : `at least ${issue.minimum}`;
      return { message: `Invalid value for ${subject}: must be ${limit}.`, code: 'invalid_value' };
    }
    case 'invalid_value':
      return { message: `Invalid value for ${subject}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}.`, code: 'invalid_value' };
    case 'invalid_union':
      return { message: `Invalid value for ${subject}: ${issue.message}.`, code: 'invalid_value' };
    default:
      return { message: `Invalid value for ${subject}: ${issue.message}.`, code: 'invalid_value' };
  }
}

/** OpenAI's name for a nested field: `messages[0].content`. */
function paramName(path: readonly PropertyKey[]): string {
  return path.reduce<string>((name, key) => (typeof key === 'number' ? `${name}[${key}]` : name ? `${name}.${String(key)}` : String(key)), '');
}

/** Validates a request body; the first problem becomes a 400 that names the field. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = paramName(issue.path);
  const { message, code } = describe(issue, param);
  throw invalidRequest(message, param || null, code);
}
