import type { FastifyBaseLogger } from 'fastify';
import { ANY_JSON_OBJECT, jsonSchemaGrammar, type GrammarSpec } from '../grammar/grammar-spec.js';
import { GrammarError } from '../grammar/xgrammar.js';
import type { ChatTools } from '../model/chat-template.js';
import type { FunctionDefinition, ParsedToolCall, ToolCallFormat } from '../tool-calls/formats.js';
import type { FinishReason } from '../engine/protocol.js';
import { SchemaError, type TaskOwner } from '../preprocess/preprocessor.js';
import { catalogueError, invalidRequest } from '../errors.js';
import type { FieldNames, OutputRequest, ResponseFormat } from './request.js';
import type { ServingContext } from './context.js';

/**
 * A response format and tools as the engine and the answer need them: the grammar the output is
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
  /** The reply must be JSON (json_object or json_schema). */
  replyIsJson?: boolean;
  /** Calls are read out of the reply; absent with no tools or `tool_choice: "none"`. */
  tools?: ToolPlan;
  /** The tools as the chat template gets them. */
  templateTools?: ChatTools;
}

/** Checks that a schema a request sent is one (off the HTTP thread); else a 400 naming `param`. */
async function checkSchema(context: ServingContext, schema: Record<string, unknown>, param: string, owner: TaskOwner): Promise<void> {
  try {
    await context.preprocessor.checkSchema(JSON.stringify(schema), owner);
  } catch (err) {
    if (err instanceof SchemaError) throw catalogueError('invalid_schema', [param, err.message], param);
    throw err;
  }
}

/** Checks a grammar with the grammar engine (off the HTTP thread); its refusal is a 400 naming `param`. */
async function checkGrammar(context: ServingContext, grammar: GrammarSpec, param: string, owner: TaskOwner): Promise<void> {
  try {
    await context.preprocessor.checkGrammar(grammar, owner);
  } catch (err) {
    if (err instanceof GrammarError) throw catalogueError('invalid_schema', [param, err.message], param);
    throw err;
  }
}

async function responseFormatPlan(context: ServingContext, format: ResponseFormat | undefined, fields: FieldNames, owner: TaskOwner): Promise<OutputPlan> {
  if (!format || format.type === 'text') return {};
  if (format.type === 'json_object' || format.schema === undefined) return { grammar: ANY_JSON_OBJECT, replyIsJson: true };
  const { schema } = format;
  await checkSchema(context, schema, fields.responseSchema, owner);
  const grammar = jsonSchemaGrammar(schema);
  await checkGrammar(context, grammar, fields.responseSchema, owner);
  return { grammar, responseSchema: schema, replyIsJson: true };
}

function toolChoicePlan(output: OutputRequest, tools: readonly FunctionDefinition[]): { choice: ToolPlan['choice'] | 'none'; named?: FunctionDefinition } {
  const choice = output.toolChoice ?? (tools.length > 0 ? 'auto' : 'none');
  if (tools.length === 0 && choice !== 'none') {
    throw invalidRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", 'tool_choice', 'invalid_value');
  }
  if (typeof choice === 'string') return { choice };
  const named = tools.find((tool) => tool.name === choice.name);
  if (!named) throw invalidRequest(`Tool choice '${choice.name}' not found in 'tools' list.`, 'tool_choice', 'invalid_value');
  return { choice: 'named', named };
}

/** Function tools as chat templates read them. */
export const toTemplateTools = (tools: readonly FunctionDefinition[]): ChatTools =>
  tools.map((fn) => ({
    type: 'function',
    function: { name: fn.name, ...(fn.description !== undefined && { description: fn.description }), ...(fn.parameters && { parameters: fn.parameters }) },
  }));

/**
 * What a response format, tools, the tool choice and parallel calls ask of a request. Every schema
 * is checked here, with a schema validator and then with the grammar engine, so that a bad one is a
 * 400 naming it and never reaches the engine.
 */
export async function planOutput(context: ServingContext, output: OutputRequest, fields: FieldNames, owner: TaskOwner): Promise<OutputPlan> {
  const tools = output.tools ?? [];
  const { choice, named } = toolChoicePlan(output, tools);
  const names = new Set<string>();
  tools.forEach((tool, index) => {
    if (names.has(tool.name)) throw invalidRequest(`Duplicate function name '${tool.name}' in 'tools'.`, fields.tool(index, 'name'), 'invalid_value');
    names.add(tool.name);
  });
  for (const [index, tool] of tools.entries()) {
    if (tool.parameters) await checkSchema(context, tool.parameters, fields.tool(index, 'parameters'), owner);
  }
  const templateTools = toTemplateTools(tools);
  const withTemplateTools = templateTools.length > 0 ? { templateTools } : {};
  if (choice === 'none') return { ...(await responseFormatPlan(context, output.responseFormat, fields, owner)), ...withTemplateTools };

  const format = context.model.toolCallFormat;
  const parallel = output.parallelToolCalls ?? true;
  const functions = named ? [named] : tools;
  const checkParameters = async () => {
    for (const [index, tool] of tools.entries()) {
      if (tool.parameters && functions.includes(tool)) await checkGrammar(context, jsonSchemaGrammar(tool.parameters), fields.tool(index, 'parameters'), owner);
    }
  };
  /**
   * The tools' grammar holds every function's parameters: when it does not compile, each of them is
   * tried alone, so that the 400 names the one at fault. Without a grammar, each is tried anyway.
   */
  const checkToolsGrammar = async (grammar: GrammarSpec | undefined) => {
    if (!grammar) return checkParameters();
    try {
      await checkGrammar(context, grammar, 'tools', owner);
    } catch (err) {
      await checkParameters();
      throw err;
    }
  };
  const parameters = new Map(tools.map((tool) => [tool.name, tool.parameters]));
  if (choice === 'auto') {
    // The model may answer in text: a response format shapes that text, else calls it starts must be well formed.
    const formatted = await responseFormatPlan(context, output.responseFormat, fields, owner);
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
 * What decoding under a grammar does not enforce (see docs/structured-output.md) is checked on the finished reply,
 * off the HTTP thread and within a time limit: a reply that breaks its schema has been sent as it
 * is, and the log says so. Never rejects.
 */
export async function checkReply(
  context: ServingContext,
  log: FastifyBaseLogger,
  owner: TaskOwner,
  output: OutputPlan,
  content: string | null,
  calls: readonly ParsedToolCall[],
  reason: FinishReason,
): Promise<void> {
  if (reason !== 'stop') return;
  const checks: { what: string; schema: Record<string, unknown> | undefined; text: string }[] = [];
  if (output.replyIsJson && content !== null && calls.length === 0) checks.push({ what: 'response_format', schema: output.responseSchema, text: content });
  for (const call of calls) checks.push({ what: call.name, schema: output.tools?.parameters.get(call.name), text: call.arguments });
  const mismatches: string[] = [];
  for (const { what, schema, text } of checks) {
    try {
      const found = await context.preprocessor.replyMismatch(schema && JSON.stringify(schema), text, owner);
      if (found !== undefined) mismatches.push(`${what}: ${found}`);
    } catch (err) {
      log.warn({ what, reason: (err as Error).message }, 'the reply could not be checked against its schema');
    }
  }
  if (mismatches.length > 0) log.warn({ mismatches }, 'the reply does not match its schema');
}
