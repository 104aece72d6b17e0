import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { FIXED_LIMITS } from '../options.js';
import { LruCache } from '../util/lru.js';

/** Schema text kept compiled, in characters: a validator grows with its schema. */
const CACHED_SCHEMA_CHARACTERS = FIXED_LIMITS.cachedValidatorCharacters.value;

/** A JSON schema that no validator can be compiled from. */
export class InvalidSchemaError extends Error {
  override readonly name = 'InvalidSchemaError';
}

/**
 * JSON schemas as validators (ajv: draft 2020-12 unless the schema's `$schema` names an older
 * draft). Compiling and validating run regular expressions a request wrote, which can take
 * exponential time: this runs in a worker that is stopped when it takes too long.
 */
export class SchemaChecker {
  private readonly validators = new LruCache<string, ValidateFunction>(CACHED_SCHEMA_CHARACTERS);
  private readonly draft07 = new Ajv({ strict: false, allErrors: false, validateFormats: false });
  private readonly draft2020 = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });

  /** The validator of `schema` (JSON text); an InvalidSchemaError when it is not a valid schema. */
  validator(schema: string): ValidateFunction {
    const cached = this.validators.get(schema);
    if (cached) return cached;
    const { $schema, ...rest } = JSON.parse(schema) as Record<string, unknown>;
    const ajv = typeof $schema === 'string' && /draft-0[4-7]/.test($schema) ? this.draft07 : this.draft2020;
    let validate: ValidateFunction;
    try {
      validate = ajv.compile(rest);
    } catch (err) {
      throw new InvalidSchemaError((err as Error).message);
    } finally {
      // Ajv keeps every schema it compiled (and refuses a second one with the same $id); this cache
      // is the one that decides what stays.
      ajv.removeSchema(rest);
    }
    this.validators.set(schema, validate, schema.length);
    return validate;
  }

  /** Why `value` does not match `schema` (JSON text), or undefined when it does. */
  mismatch(schema: string, value: unknown): string | undefined {
    const validate = this.validator(schema);
    if (validate(value)) return undefined;
    const error = validate.errors?.[0];
    return error ? `${error.instancePath || '/'} ${error.message ?? 'does not match'}` : 'does not match';
  }
}
