import type { FastifyBaseLogger } from 'fastify';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ANY_JSON_OBJECT, jsonSchemaGrammar, type GrammarSpec } from '../grammar/grammar-spec.js';
import { GrammarError } from '../grammar/xgrammar.js';
import type { ChatTools } from '../model/chat-template.js';
import type { ParsedToolCall, ToolCallFormat } from '../tool-calls/formats.js';
import type { FinishReason } from '../engine/protocol.js';
import { invalidRequest } from './errors.js';
import type { ChatCompletionRequest, FunctionTool } from './schemas.js';
import type { ServingContext } from './serving.js';

/**
 * `response_format` and `tools` as the engine and the answer need them: the grammar the output is
 * decoded under, the schema it is checked against afterwards, and how tool calls are read back.
 */

/** How a chat request's tools are used. */
export interface ToolPlan {
  format: ToolCallFormat;
  /** `auto`: the model may call; `required`: it must (one call or, with parallel calls, more); `named`: it must call that one. */
  choice: 'auto' | 'required' | 'named';
  /** The function names a call may have, with each one's parameters schema. */
  parameters: ReadonlyMap<string, Record<string, unknown> | undefined>;
  /** Calls are written under their grammar, so a stream can send them as they come. */
  enforced: boolean;
}

export interface OutputPlan {
  grammar?: GrammarSpec;
  /** The JSON schema the whole reply must match (json_schema), checked once it is done. */
  responseSchema?: Record<string, unknown>;
  /** Calls are read out of the reply; absent with no tools or `tool_choice: "none"`. */
  tools?: ToolPlan;
  /** The tools as the chat template gets them. */
  templateTools?: ChatTools;
}

const VALIDATORS = 128;
const validators = new Map<string, ValidateFunction>();
const draft07 = new Ajv({ strict: false, allErrors: false, validateFormats: false });
const draft2020 = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });

/**
 * A validator for a schema a request sent, or a 400 naming `param` when it is not a valid JSON
 * schema. Draft 2020-12 unless the schema's `$schema` names an older draft.
 */
export function schemaValidator(schema: Record<string, unknown>, param: string): ValidateFunction {
  const key = JSON.stringify(schema);
  const cached = validators.get(key);
  if (cached) return cached;
  const { $schema, ...rest } = schema;
  const ajv = typeof $schema === 'string' && /draft-0[4-7]/.test($schema) ? draft07 : draft2020;
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(rest);
  } catch (err) {
    throw invalidRequest(`Invalid schema for '${param}': ${(err as Error).message}`, param, 'invalid_schema');
  }
  validators.set(key, validate);
  if (validators.size > VALIDATORS) validators.delete(validators.keys().next().value!);
  return validate;
}

/** Why `value` does not match `schema`, or undefined when it does. */
export function schemaMismatch(schema: Record<string, unknown>, value: unknown): string | undefined {
  const validate = schemaValidator(schema, 'schema');
  if (validate(value)) return undefined;
  const error = validate.errors?.[0];
  return error ? `${error.instancePath || '/'} ${error.message ?? 'does not match'}` : 'does not match';
}

/** Checks a grammar with the grammar engine (off the HTTP thread); its refusal is a 400 naming `param`. */
async function checkGrammar(context: ServingContext, grammar: GrammarSpec, param: string): Promise<void> {
  try {
    await context.preprocessor.checkGrammar(grammar);
  } catch (err) {
    if (err instanceof GrammarError) throw invalidRequest(`Invalid schema for '${param}': ${err.message}`, param, 'invalid_schema');
    throw err;
  }
}

async function responseFormatPlan(context: ServingContext, format: ChatCompletionRequest['response_format']): Promise<OutputPlan> {
  if (!format || format.type === 'text') return {};
  if (format.type === 'json_object') return { grammar: ANY_JSON_OBJECT };
  const { schema } = format.json_schema;
  if (schema === undefined) return { grammar: ANY_JSON_OBJECT };
  const param = 'response_format.json_schema.schema';
  schemaValidator(schema, param);
  const grammar = jsonSchemaGrammar(schema);
  await checkGrammar(context, grammar, param);
  return { grammar, responseSchema: schema };
}

function toolChoicePlan(body: ChatCompletionRequest, tools: readonly FunctionTool[]): { choice: ToolPlan['choice'] | 'none'; named?: FunctionTool } {
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (tools.length === 0 && choice !== 'none') {
    throw invalidRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", 'tool_choice', 'invalid_value');
  }
  if (typeof choice === 'string') return { choice };
  const named = tools.find((tool) => tool.function.name === choice.function.name);
  if (!named) throw invalidRequest(`Tool choice '${choice.function.name}' not found in 'tools' list.`, 'tool_choice', 'invalid_value');
  return { choice: 'named', named };
}

/** Function tools as chat templates read them. */
export const toTemplateTools = (tools: readonly FunctionTool[]): ChatTools =>
  tools.map(({ function: fn }) => ({
    type: 'function',
    function: { name: fn.name, ...(fn.description !== undefined && { description: fn.description }), ...(fn.parameters && { parameters: fn.parameters }) },
  }));

/**
 * What `response_format`, `tools`, `tool_choice` and `parallel_tool_calls` ask of a chat request.
 * Every schema is checked here, with a schema validator and then with the grammar engine, so that
 * a bad one is a 400 naming it and never reaches the engine.
 */
export async function planOutput(context: ServingContext, body: ChatCompletionRequest): Promise<OutputPlan> {
  const tools = body.tools ?? [];
  const { choice, named } = toolChoicePlan(body, tools);
  const names = new Set<string>();
  tools.forEach((tool, index) => {
    const { name, parameters } = tool.function;
    if (names.has(name)) throw invalidRequest(`Duplicate function name '${name}' in 'tools'.`, `tools[${index}].function.name`, 'invalid_value');
    names.add(name);
    if (parameters) schemaValidator(parameters, `tools[${index}].function.parameters`);
  });
  const templateTools = toTemplateTools(tools);
  const withTemplateTools = templateTools.length > 0 ? { templateTools } : {};
  if (choice === 'none') return { ...(await responseFormatPlan(context, body.response_format)), ...withTemplateTools };

  const format = context.model.toolCallFormat;
  const parallel = body.parallel_tool_calls ?? true;
  const functions = (named ? [named] : tools).map((tool) => tool.function);
  const checkParameters = async () => {
    for (const [index, tool] of tools.entries()) {
      const { parameters } = tool.function;
      if (parameters && functions.includes(tool.function)) await checkGrammar(context, jsonSchemaGrammar(parameters), `tools[${index}].function.parameters`);
    }
  };
  /**
   * The tools' grammar holds every function's parameters: when it does not compile, each of them is
   * tried alone, so that the 400 names the one at fault. Without a grammar, each is tried anyway.
   */
  const checkToolsGrammar = async (grammar: GrammarSpec | undefined) => {
    if (!grammar) return checkParameters();
    try {
      await checkGrammar(context, grammar, 'tools');
    } catch (err) {
      await checkParameters();
      throw err;
    }
  };
  const parameters = new Map(tools.map((tool) => [tool.function.name, tool.function.parameters]));
  if (choice === 'auto') {
    // The model may answer in text: response_format shapes that text, else calls it starts must be well formed.
    const formatted = await responseFormatPlan(context, body.response_format);
    if (formatted.grammar) {
      await checkParameters();
      return { ...formatted, tools: { format, choice, parameters, enforced: false }, ...withTemplateTools };
    }
    const grammar = format.autoGrammar(functions, parallel);
    await checkToolsGrammar(grammar);
    return { ...(grammar && { grammar }), tools: { format, choice, parameters, enforced: grammar !== undefined }, ...withTemplateTools };
  }
  const grammar = format.callsGrammar(functions, named ? false : parallel);
  await checkToolsGrammar(grammar);
  return { grammar, tools: { format, choice, parameters, enforced: true }, ...withTemplateTools };
}

/** Under `required` or a named function the grammar allows only calls: one cut off by the token limit is dropped, not sent as text. */
export const dropsUnfinished = (output: OutputPlan, reason: FinishReason) => reason === 'length' && output.tools !== undefined && output.tools.choice !== 'auto';

/**
 * What decoding under a grammar does not enforce (see the README) is checked on the finished reply;
 * a reply that breaks its schema is sent as it is, and the log says so.
 */
export function checkReply(log: FastifyBaseLogger, output: OutputPlan, content: string | null, calls: readonly ParsedToolCall[], reason: FinishReason): void {
  if (reason !== 'stop') return;
  /** Why `text` is not JSON of `schema` (any JSON without one), prefixed by `what`. */
  const mismatch = (schema: Record<string, unknown> | undefined, text: string, what: string, notJson: string): string | undefined => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return notJson;
    }
    const found = schema && schemaMismatch(schema, value);
    return found && `${what}: ${found}`;
  };
  const mismatches: (string | undefined)[] = [];
  if (output.responseSchema && content !== null && calls.length === 0) mismatches.push(mismatch(output.responseSchema, content, 'response_format', 'the reply is not JSON'));
  for (const call of calls) mismatches.push(mismatch(output.tools?.parameters.get(call.name), call.arguments, call.name, `${call.name}: the arguments are not JSON`));
  const found = mismatches.filter((text) => text !== undefined);
  if (found.length > 0) log.warn({ mismatches: found }, 'the reply does not match its schema');
}

