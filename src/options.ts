import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { REASONING_PARSERS } from './reasoning/formats.js';
import { TOOL_CALL_PARSERS } from './tool-calls/formats.js';
import { DTYPES } from './model/files.js';

export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../models/tinystories-gpt2', import.meta.url));

const integer = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^-?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/**
 * A key as clients send it in `Authorization: Bearer KEY`: visible ASCII without spaces. Anything
 * else could never match what arrives in the header, and would lock every client out.
 */
const apiKey = z.string().regex(/^[\x21-\x7e]+$/, 'a key must be one or more visible ASCII characters, without spaces');

/** A switch: given as a bare flag, or a variable saying 1/0, true/false, yes/no, on/off. */
const onOff = z.union([z.boolean(), z.string()]).transform((value, context) => {
  if (typeof value === 'boolean') return value;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  context.addIssue({ code: 'custom', message: 'must be 1 or 0 (true/false, yes/no, on/off)' });
  return z.NEVER;
});

/** Every setting: its command-line flag, its environment variable, its default and what it does. */
const OPTIONS = {
  model: {
    field: 'models',
    env: 'ORTSERVE_MODEL',
    schema: z.array(z.string().min(1)).default([]),
    help: 'model directory (Optimum, transformers.js or onnxruntime-genai layout), or a Hugging Face id (org/name), fetched into the Hugging Face cache if it is not there; repeat it to serve several, each loaded at start (env: comma-separated)',
    doc: 'Model directory (Optimum, transformers.js or onnxruntime-genai layout, see [Models](models.md)), or a Hugging Face id (`org/name`): the files its graph needs are fetched into the Hugging Face cache, those already there are not fetched again (see [Models](models.md#from-the-hugging-face-hub)). Repeat it to serve several models: each is loaded at start and stays loaded (see [Several models](models.md#several-models)).',
    shown: 'models/tinystories-gpt2, unless --models-dir or --hub-cache-models is given',
    list: true,
  },
  'model-alias': {
    field: 'modelAliases',
    env: 'ORTSERVE_MODEL_ALIAS',
    schema: z.array(z.string().regex(/^[^=\s]+=[^=\s]+$/, 'must be ALIAS=MODEL, e.g. gpt-4o-mini=tinystories-gpt2')).default([]),
    help: 'another name requests may give a model: ALIAS=MODEL (a model of --model, --models-dir or the hub cache); repeat it for several (env: comma-separated)',
    doc: 'Another name requests may give a model, as `ALIAS=MODEL`, where MODEL is the id of a model of `--model`, `--models-dir` or `--hub-cache-models` (`--model-alias gpt-4o-mini=tinystories-gpt2`). Repeat it for several. The first `--model` also takes `--served-model-name`\'s names.',
    list: true,
  },
  'models-dir': {
    field: 'modelsDir',
    env: 'ORTSERVE_MODELS_DIR',
    schema: z.string().min(1).optional(),
    help: 'a folder whose subfolders holding a graph are models too, named by their folder, loaded on their first request',
    doc: 'A folder whose subfolders holding a graph (at their top or under `onnx/`) are models too, named by the subfolder: listed by `/v1/models`, loaded on their first request, unloaded after `--keep-alive` idle (see [Several models](models.md#several-models)).',
  },
  'hub-cache-models': {
    field: 'hubCacheModels',
    env: 'ORTSERVE_HUB_CACHE_MODELS',
    schema: onOff.default(false),
    help: 'also serve, loaded on their first request, the models in the Hugging Face cache that have an ONNX graph',
    doc: 'Also serve the models in the Hugging Face cache that have an ONNX graph, by their hub id (`org/name`): listed by `/v1/models`, loaded on their first request, unloaded after `--keep-alive` idle. Nothing is fetched for them.',
    switch: true,
  },
  'keep-alive': {
    field: 'keepAliveMs',
    scale: 1000,
    env: 'ORTSERVE_KEEP_ALIVE',
    schema: integer(-1, 31_536_000).default(300),
    help: 'seconds a model loaded on request stays loaded once idle (0: unloaded as soon as idle; -1: never unloaded)',
    doc: 'Seconds a model loaded on its first request (`--models-dir`, `--hub-cache-models`, `POST /models/load`) stays loaded once no request uses it; 0 unloads it as soon as it is idle, -1 never. Models given with `--model` stay loaded.',
  },
  'max-loaded-models': {
    field: 'maxLoadedModels',
    env: 'ORTSERVE_MAX_LOADED_MODELS',
    schema: integer(0, 1024).default(0),
    help: 'most models loaded at once; loading another unloads the least recently used idle one (0: no limit but the memory budget)',
    doc: 'Most models loaded at once. Loading another unloads the least recently used idle model that was loaded on request; when none can be unloaded, the request is a 503 that says so. 0: no limit but `--memory-budget-mb`.',
  },
  'memory-budget-mb': {
    field: 'memoryBudgetMb',
    env: 'ORTSERVE_MEMORY_BUDGET_MB',
    schema: integer(0, 16 * 1024 * 1024).default(0),
    help: "MiB the loaded models may take together, by their weights and KV cache (0: 80% of the machine's memory)",
    doc: "MiB the loaded models may take together, each counted by its weights (the graph and its external data) and its KV cache at capacity. A model that would go over is loaded after the least recently used idle models loaded on request are unloaded; a model larger than the budget by itself is refused with an error that gives both sizes. 0: 80% of the machine's memory.",
    shown: "0 (80% of the machine's memory)",
  },
  'model-file': {
    field: 'modelFile',
    env: 'ORTSERVE_MODEL_FILE',
    schema: z.string().min(1).optional(),
    help: 'graph file inside the model directory (or its onnx/ folder), e.g. model_quantized.onnx',
    doc: 'Graph file inside the model directory or its `onnx/` folder, e.g. `model_quantized.onnx`. Without it, the graph is chosen as [Models](models.md) describes.',
    shown: 'found in the folder (see docs/models.md)',
  },
  dtype: {
    field: 'dtype',
    env: 'ORTSERVE_DTYPE',
    schema: z.enum(DTYPES).optional(),
    help: `graph by its precision, in transformers.js' names: ${DTYPES.join(', ')} (q4 → model_q4.onnx)`,
    doc: "The graph by its precision, in transformers.js' names: `fp32` (`model.onnx`), `fp16`, `q8` (`model_quantized.onnx`), `int8`, `uint8`, `q4`, `q4f16`, `bnb4` (`model_<dtype>.onnx`, or `decoder_model_merged_<dtype>.onnx`), in the folder or its `onnx/` folder. Not with `--model-file`. Without either, the graph is chosen as [Models](models.md) describes.",
    shown: 'found in the folder (see docs/models.md)',
  },
  revision: {
    field: 'revision',
    env: 'ORTSERVE_REVISION',
    schema: z.string().regex(/^[\w.\/-]+$/, 'must be a branch, a tag or a commit of the repository').default('main'),
    help: 'branch, tag or commit of a Hugging Face model to serve or pull',
    doc: 'Branch, tag or commit of a Hugging Face model (`--model ORG/NAME`) to serve or pull; see [Models](models.md#from-the-hugging-face-hub).',
  },
  offline: {
    field: 'offline',
    env: 'ORTSERVE_OFFLINE',
    alias: 'HF_HUB_OFFLINE',
    schema: onOff.default(false),
    help: "never touch the network: a Hugging Face model is served from the local cache, or refused if it is not there",
    doc: "Never touch the network: a Hugging Face model (`--model ORG/NAME`) is served from the local Hugging Face cache, and refused with an error if it is not there. Without it, the hub is asked for the revision's files (those already cached are not fetched again), and the cache's copy is served if the hub cannot be reached. `HF_HUB_OFFLINE`, as huggingface_hub reads it, is honoured too.",
    switch: true,
  },
  'served-model-name': {
    field: 'servedModelNames',
    env: 'ORTSERVE_SERVED_MODEL_NAME',
    schema: z.array(z.string().min(1)).default([]),
    help: 'model id in the API; repeat it for aliases clients may also ask for (the first is the one listed; env: comma-separated)',
    doc: 'Model id in the API. Repeat it for aliases a request may also name (`--served-model-name tinystories-gpt2 --served-model-name text-davinci-002`); the first is the one `/v1/models` lists and responses name.',
    shown: "the model directory's name",
    list: true,
  },
  host: {
    field: 'host',
    env: 'ORTSERVE_HOST',
    schema: z.string().min(1).default('0.0.0.0'),
    help: 'address to listen on',
    doc: 'Address to listen on.',
  },
  port: {
    field: 'port',
    env: 'PORT',
    alias: 'ORTSERVE_PORT',
    schema: integer(0, 65535).default(8000),
    help: 'port to listen on',
    doc: 'Port to listen on.',
  },
  'reasoning-parser': {
    field: 'reasoningParser',
    env: 'ORTSERVE_REASONING_PARSER',
    schema: z.enum(REASONING_PARSERS).default('auto'),
    help: "how a chat reply's thinking is told apart (reasoning_content): auto (from the chat template's markers), think (<think>…</think>), none (all content)",
    doc: "How a chat reply's thinking is told apart from its answer and given as `reasoning_content`: `auto` finds the markers in the chat template (`<think>` and `</think>`, as Qwen3, QwQ, DeepSeek-R1 and SmolLM3 write them); `think` takes those markers whatever the template says; `none` leaves the thinking in `content`. See [API](api.md#reasoning).",
  },
  'tool-call-parser': {
    field: 'toolCallParser',
    env: 'ORTSERVE_TOOL_CALL_PARSER',
    schema: z.enum(TOOL_CALL_PARSERS).default('auto'),
    help: `how the model writes tool calls: auto (from the chat template's markers) or one of ${TOOL_CALL_PARSERS.slice(1).join(', ')}`,
    doc: "How the model writes tool calls, which sets the grammar that makes it call and how calls are read out of its reply: `auto` finds the format from the markers the chat template writes; a name picks it. See [API](api.md#tool-call-formats).",
  },
  device: {
    field: 'device',
    engine: true,
    env: 'ORTSERVE_DEVICE',
    schema: z.enum(['cpu', 'cuda']).default('cpu'),
    help: 'execution provider: cpu or cuda',
    doc: 'Execution provider: `cpu` or `cuda`.',
  },
  threads: {
    field: 'threads',
    engine: true,
    env: 'ORTSERVE_THREADS',
    schema: integer(0, 1024).default(0),
    help: 'threads per forward pass (0: one per core)',
    doc: 'Threads per forward pass; 0 is one per core. (Leaving a core to the HTTP thread was measured slower at 1 and 16 clients, with `/health` as quick; see [bench/README.md](../bench/README.md#threads).)',
  },
  weights: {
    field: 'weights',
    engine: true,
    env: 'ORTSERVE_WEIGHTS',
    schema: z.enum(['as-exported', 'int8', 'int4']).default('as-exported'),
    help: 'weights as the graph has them, or int8/int4: the MatMuls quantized to 8 or 4 bits as it loads (faster, smaller; outputs change a little)',
    doc: "`as-exported`, `int8` or `int4`: as the graph loads, every MatMul by a float32 weight held in the graph becomes an 8-bit `DynamicQuantizeMatMul` (the output head too; weights a quarter of the memory) or a 4-bit `MatMulNBits` (blocks of 32, the output head too; an eighth). Faster decoding; outputs change a little; with int8 a sequence's stay the same alone and batched, with int4 under `--batch-invariant` (see [models/README.md](../models/README.md)).",
  },
  'batch-invariant': {
    field: 'batchInvariant',
    engine: true,
    env: 'ORTSERVE_BATCH_INVARIANT',
    schema: onOff.default(false),
    help: 'with --weights int4, a sequence gets the same numbers alone as batched (one-row steps padded to two rows, about 20% slower for a lone stream)',
    doc: 'With `--weights int4`: a sequence gets the same numbers decoded alone as batched with others, because one-row steps are padded to two rows (MatMulNBits computes one row with another kernel, whose sums round differently). Off by default: padding cost a lone stream about 20% of its speed (see [models/README.md](../models/README.md#weights-in-8-or-4-bits---weights-int8---weights-int4)), and without it a sequence decoded alone may, rarely, take another token than batched. `--weights int8` is batch-invariant either way.',
    switch: true,
  },
  attention: {
    field: 'attention',
    engine: true,
    env: 'ORTSERVE_ATTENTION',
    schema: z.enum(['slots', 'as-exported']).default('slots'),
    help: "slots: each layer's attention rewritten at load to read a past the engine writes in place (no cache copy per step); as-exported: the graph's own",
    doc: "`slots`: as the graph loads, each layer's attention is rewritten to read a past held in slots that each step writes into, the KV heads unrepeated, so no step copies the cache (where the graph has the plain `Concat` attention and `position_ids`, or `GroupQueryAttention`; see [models/README.md](../models/README.md#slot-attention---attention-slots-the-default)); `as-exported`: the graph's own attention (a `GroupQueryAttention` graph then runs only rows of one length together).",
  },
  'max-batch': {
    field: 'maxBatch',
    engine: true,
    env: 'ORTSERVE_MAX_BATCH',
    schema: integer(1, 1024).default(16),
    help: 'most sequences decoded together in one step',
    doc: 'Most sequences decoded together in one step.',
  },
  'max-queue': {
    field: 'maxQueue',
    env: 'ORTSERVE_MAX_QUEUE',
    schema: integer(0, 1_000_000).default(256),
    help: 'most sequences waiting for a batch slot; beyond it requests get 429',
    doc: 'Most sequences waiting for a batch slot; beyond it requests get a 429.',
  },
  'max-kv-tokens': {
    field: 'maxKvTokens',
    engine: true,
    env: 'ORTSERVE_MAX_KV_TOKENS',
    schema: integer(0).default(0),
    help: 'most tokens (prompt + max_tokens) running sequences may hold in the KV cache together (0: max-batch × context)',
    doc: 'Most tokens (prompt + `max_tokens`) the running sequences may hold in the KV cache together; 0 means `max-batch` × the context length.',
  },
  'prefill-chunk': {
    field: 'prefillChunk',
    engine: true,
    env: 'ORTSERVE_PREFILL_CHUNK',
    schema: integer(1, 65536).default(16),
    help: 'tokens of each prompt prefilled between two decode steps (smaller: smoother streams, slower first token)',
    doc: 'Tokens of each prompt prefilled between two decode steps (smaller: smoother streams, slower first token).',
  },
  'prefix-cache-tokens': {
    field: 'prefixCacheTokens',
    engine: true,
    env: 'ORTSERVE_PREFIX_CACHE_TOKENS',
    schema: integer(0).default(2048),
    help: 'most prompt positions whose KV is kept, in whole prefill chunks, for later prompts that start the same way (0: no prefix cache)',
    doc: 'Most prompt positions whose KV is kept, in whole prefill chunks, for later prompts that start the same way (0: no prefix cache; see [Behaviour](api.md#behaviour)).',
  },
  'api-key': {
    field: 'apiKeys',
    env: 'ORTSERVE_API_KEYS',
    schema: z.array(apiKey).default([]),
    help: 'API key clients must send as "Authorization: Bearer KEY" (or "x-api-key: KEY") on /v1/* (repeatable; env: comma-separated)',
    doc: 'An API key clients must send as `Authorization: Bearer KEY` (or `x-api-key: KEY`, as Anthropic clients do) on `/v1/*`; repeat the flag for several keys. Without any, the API is open.',
    shown: 'none',
    list: true,
  },
  'cors-origin': {
    field: 'corsOrigins',
    env: 'ORTSERVE_CORS_ORIGINS',
    schema: z.array(z.string().regex(/^(\*|https?:\/\/[^\s/]+)$/, 'an origin is * or scheme://host[:port], e.g. https://app.example.com')).default([]),
    help: 'origin whose browser pages may call /v1/* (CORS, preflight included; * for any; repeatable; env: comma-separated)',
    doc: 'An origin (`https://app.example.com`, or `*` for any) whose browser pages may call the API: CORS headers and preflight (`OPTIONS`, which needs no key). Repeat the flag for several. Without any, no CORS headers are sent.',
    shown: 'none',
    list: true,
  },
  'request-timeout': {
    field: 'requestTimeoutMs',
    scale: 1000,
    env: 'ORTSERVE_REQUEST_TIMEOUT',
    schema: integer(0, 86_400).default(600),
    help: 'seconds a request may take before it is cancelled (504, or an error event on a stream); 0: no limit',
    doc: 'Seconds a request may take before it is cancelled (504, or an error event on a stream); 0: no limit.',
  },
  'receive-timeout': {
    field: 'receiveTimeoutMs',
    scale: 1000,
    env: 'ORTSERVE_RECEIVE_TIMEOUT',
    schema: integer(1, 3600).default(30),
    help: 'seconds a client has to send a whole request, headers and body (408 beyond)',
    doc: 'Seconds a client has to send a whole request, headers and body; a slower one gets a 408 and is disconnected.',
  },
  'shutdown-grace': {
    field: 'shutdownGraceMs',
    scale: 1000,
    env: 'ORTSERVE_SHUTDOWN_GRACE',
    schema: integer(0, 86_400).default(30),
    help: 'seconds in-flight requests get to finish after SIGTERM or SIGINT',
    doc: 'Seconds in-flight requests get to finish after SIGTERM or SIGINT.',
  },
  'drain-delay': {
    field: 'drainDelayMs',
    scale: 1000,
    env: 'ORTSERVE_DRAIN_DELAY',
    schema: integer(0, 3_600).default(0),
    help: 'seconds after SIGTERM or SIGINT during which /ready says 503 but requests are still served, so a load balancer takes the replica out first',
    doc: 'Seconds after SIGTERM or SIGINT during which `/ready` answers 503 while requests are still served, so that a load balancer or Kubernetes takes the replica out before it refuses anything; then new requests get 503 and those in flight get `--shutdown-grace` to finish. See [deployment](deployment.md).',
  },
  'grammar-compile-limit': {
    field: 'grammarCompileLimitMs',
    env: 'ORTSERVE_GRAMMAR_COMPILE_LIMIT',
    schema: integer(100, 600_000).default(2500),
    help: 'milliseconds a response_format schema or a set of tools may take to compile into a grammar (400 beyond); the engine compiles each new grammar once more, holding up the running streams for as long',
    doc: 'Milliseconds a `response_format` schema or a set of tools may take to compile into a grammar (400 beyond); see [Structured output](structured-output.md).',
  },
  'grammar-cache-mb': {
    field: 'grammarCacheBytes',
    engine: true,
    scale: 1024 * 1024,
    env: 'ORTSERVE_GRAMMAR_CACHE_MB',
    schema: integer(16, 65536).default(256),
    help: 'memory each of the engine\'s two grammar threads may hold in compiled grammars, estimated from their size, least recently used dropped first; a schema whose grammar alone needs more is refused (400)',
    doc: "Memory each of the engine's two grammar threads may hold in compiled grammars, estimated from the size of each grammar (a 60,000-value `enum` holds about 130 MB); the least recently used are dropped first, and a schema whose grammar alone would need more is a 400.",
  },
  'prefix-cache-partition-header': {
    field: 'prefixCachePartitionHeader',
    env: 'ORTSERVE_PREFIX_CACHE_PARTITION_HEADER',
    schema: z
      .string()
      .regex(/^[a-z0-9-]+$/i, 'a header name: letters, digits and dashes')
      .transform((name) => name.toLowerCase())
      .optional(),
    help: 'request header whose value partitions the prefix cache (a tenant id a gateway sets); by default each API key has its own partition, and a server without keys shares one',
    doc: 'A request header whose value partitions the prefix cache (a tenant id that a gateway sets) instead of the API key; see [Behaviour](api.md#behaviour).',
    shown: 'none (partitioned by API key)',
  },
  'max-connections': {
    field: 'maxConnections',
    env: 'ORTSERVE_MAX_CONNECTIONS',
    schema: integer(0, 1_000_000).default(0),
    help: 'most open client connections; close to it, idle keep-alive connections and then the oldest that sent no request yet are closed to make room (0: what the open-file limit leaves)',
    doc: 'Most open client connections. Close to it, each new connection makes room: idle keep-alive connections are closed first, then the oldest that have not sent a request yet, so idle clients cannot use up the file descriptors and lock out new ones (or the probes). 0: the open-file limit less 128 (at most 65,536).',
  },
  'max-body-bytes': {
    field: 'maxBodyBytes',
    limit: true,
    env: 'ORTSERVE_MAX_BODY_BYTES',
    schema: integer(1).default(1024 * 1024),
    help: 'largest request body accepted (413 beyond)',
    doc: 'Largest request body (413 beyond).',
  },
  'max-n': {
    field: 'maxN',
    limit: true,
    env: 'ORTSERVE_MAX_N',
    schema: integer(1, 1024).default(16),
    help: 'largest n or best_of: sequences generated per prompt',
    doc: 'Largest `n` or `best_of`.',
  },
  'max-tokens-limit': {
    field: 'maxTokens',
    limit: true,
    env: 'ORTSERVE_MAX_TOKENS_LIMIT',
    // 0 is resolved here, once: no limit of its own (undefined), only the context's.
    schema: integer(0)
      .default(0)
      .transform((limit) => (limit === 0 ? undefined : limit)),
    shown: '0',
    help: 'largest max_tokens (or max_completion_tokens) a request may ask for (0: the context length)',
    doc: 'Largest `max_tokens` / `max_completion_tokens`; 0: only the context length limits it.',
  },
  'max-prompts': {
    field: 'maxPrompts',
    limit: true,
    env: 'ORTSERVE_MAX_PROMPTS',
    schema: integer(1, 65536).default(32),
    help: 'most prompts in one completions request',
    doc: 'Most prompts in one completions request.',
  },
  'max-stop': {
    field: 'maxStop',
    limit: true,
    env: 'ORTSERVE_MAX_STOP',
    schema: integer(0, 1024).default(4),
    help: 'most stop strings in one request',
    doc: 'Most stop strings in one request.',
  },
  'max-stop-length': {
    field: 'maxStopLength',
    limit: true,
    env: 'ORTSERVE_MAX_STOP_LENGTH',
    schema: integer(1, 65536).default(256),
    help: 'longest stop string, in characters',
    doc: 'Longest stop string, in characters.',
  },
  'max-messages': {
    field: 'maxMessages',
    limit: true,
    env: 'ORTSERVE_MAX_MESSAGES',
    schema: integer(1, 1_000_000).default(512),
    help: 'most messages in one chat request',
    doc: 'Most messages in one chat request.',
  },
  'max-json-depth': {
    field: 'maxJsonDepth',
    limit: true,
    env: 'ORTSERVE_MAX_JSON_DEPTH',
    schema: integer(2, 64).default(64),
    help: 'deepest nesting of arrays and objects in a request body, counted from the body itself; tool-call arguments in the history count from their own root (the grammar engine fails on schemas much deeper than 64)',
    doc: 'Deepest nesting of arrays and objects in a request body (counted from the body; tool-call arguments in the history from their own root); deeper is a 400 naming the field. At most 64: the grammar engine fails on schemas much deeper.',
  },
  'log-level': {
    field: 'logLevel',
    env: 'ORTSERVE_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    help: 'log level (prompt text is logged at debug only)',
    doc: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.',
  },
} as const;

/**
 * Limits that are not options, named once here; docs/configuration.md lists them. Each bounds what
 * one request can cost the others.
 */
export const FIXED_LIMITS = {
  templateRenderMs: { value: 2000, doc: 'Milliseconds a chat template may take to render a conversation; beyond it the request is a 400 and the preprocessing worker is replaced.' },
  workerHeapMb: { value: 1024, doc: 'Heap of each preprocessing worker, in MiB: a template or schema that builds more fails its own request, not the server.' },
  replyCheckMs: { value: 1000, doc: "Milliseconds checking a finished reply against its schema may take (the grammar does not enforce every keyword); beyond it the reply is sent unchecked and the check's failure is logged." },
  grammarMaskTimeoutMs: { value: 60_000, doc: "Milliseconds the decode loop waits for a grammar thread's token masks before it fails the constrained sequences." },
  cachedValidatorCharacters: { value: 32 * 1024 * 1024, doc: 'Schema text whose compiled validators are kept, in characters; the least recently used go first.' },
  rememberedChecks: { value: 1024, doc: 'Schemas and grammars remembered as checked (by digest), so that one sent again is not checked again.' },
  rememberedClients: { value: 1024, doc: "Clients whose last turn in a preprocessing queue is remembered after their queue empties, so that one cannot jump the queue by pausing." },
} as const;

/** What each entry of OPTIONS says; `field` names its place in ServerConfig (in `limits` with `limit`). */
export interface OptionSpec {
  field: string;
  env: string;
  /** A second variable, read when `env` is unset. */
  alias?: string;
  schema: z.ZodType;
  /** The one line --help shows. */
  help: string;
  /** What the option does, in full, as docs/configuration.md shows it (markdown; links relative to docs/). */
  doc: string;
  /** The default as --help and docs/configuration.md show it, where it is not the schema's own. */
  shown?: string;
  /** Repeatable flag; a comma-separated variable. */
  list?: true;
  /** A flag without a value (`--offline`); its variable says 1 or 0. */
  switch?: true;
  /** Part of RequestLimits. */
  limit?: true;
  /** Part of EngineSettings: the engine thread reads it. */
  engine?: true;
  /** The parsed value is multiplied by this (seconds given, milliseconds kept). */
  scale?: number;
}

/** The settings: what --help lists and docs/configuration.md shows (written by tools/config-docs.ts). */
export const CONFIG_OPTIONS: Readonly<Record<OptionName, OptionSpec>> = OPTIONS;

type Options = typeof OPTIONS;
export type OptionName = keyof Options;
type Value<N extends OptionName> = z.output<Options[N]['schema']>;
type LimitName = { [N in OptionName]: Options[N] extends { limit: true } ? N : never }[OptionName];
type EngineSettingName = { [N in OptionName]: Options[N] extends { engine: true } ? N : never }[OptionName];

/** What a single request may ask for; each is a 400 (413 for the body) that names the limit. */
export type RequestLimits = { [N in LimitName as Options[N]['field']]: Value<N> };

/** What the engine thread reads of the settings, as the table has them. */
export type EngineSettings = { [N in EngineSettingName as Options[N]['field']]: Value<N> };

/** The fields of EngineSettings, read off the table. */
const ENGINE_FIELDS = Object.values(OPTIONS as Record<string, OptionSpec>).flatMap((option) => (option.engine ? [option.field] : []));

/** The engine's part of the settings. */
export function engineSettings(config: ServerConfig): EngineSettings {
  const all = config as unknown as Record<string, unknown>;
  return Object.fromEntries(ENGINE_FIELDS.map((field) => [field, all[field]])) as EngineSettings;
}

/** Every setting by its field; timeouts in milliseconds (0: none), limits under `limits`. */
export type ServerConfig = { [N in Exclude<OptionName, LimitName> as Options[N]['field']]: Value<N> } & { limits: RequestLimits };

/** The default value of an option, as the server uses it (scaled like a value given). */
export function defaultValue<N extends OptionName>(name: N): Value<N> {
  return scaled(OPTIONS[name], OPTIONS[name].schema.parse(undefined)) as Value<N>;
}

/** A parsed value in the unit the server keeps (seconds given, milliseconds kept, say). */
export const scaled = (option: OptionSpec, value: unknown): unknown => (option.scale && typeof value === 'number' ? value * option.scale : value);

/** The default of an option as --help and docs/configuration.md show it. */
export function shownDefault(name: OptionName): string {
  const option: OptionSpec = OPTIONS[name];
  if (option.shown !== undefined) return option.shown;
  const value: unknown = option.schema.parse(undefined);
  return value === undefined ? '' : String(value);
}

/** The whole table as one schema: each option's value, validated. */
export const ConfigSchema = z.object(
  Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.schema])) as {
    [K in OptionName]: Options[K]['schema'];
  },
);
