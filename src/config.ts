import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';

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

/** Every setting: its command-line flag, its environment variable, its default and what it does. */
const OPTIONS = {
  model: {
    env: 'ORTSERVE_MODEL',
    schema: z.string().min(1).default(DEFAULT_MODEL_DIR),
    help: 'model directory (Hugging Face Optimum ONNX layout)',
    shown: 'models/tinystories-gpt2',
  },
  'model-file': {
    env: 'ORTSERVE_MODEL_FILE',
    schema: z.string().min(1).default('model.onnx'),
    help: 'graph file inside the model directory (or its onnx/ folder), e.g. model_quantized.onnx',
  },
  'served-model-name': {
    env: 'ORTSERVE_SERVED_MODEL_NAME',
    schema: z.string().min(1).optional(),
    help: 'model id in the API',
    shown: 'the model directory name',
  },
  host: { env: 'ORTSERVE_HOST', schema: z.string().min(1).default('0.0.0.0'), help: 'address to listen on' },
  port: { env: 'PORT', alias: 'ORTSERVE_PORT', schema: integer(0, 65535).default(8000), help: 'port to listen on' },
  device: {
    env: 'ORTSERVE_DEVICE',
    schema: z.enum(['cpu', 'cuda']).default('cpu'),
    help: 'execution provider: cpu or cuda',
  },
  threads: {
    env: 'ORTSERVE_THREADS',
    schema: integer(0, 1024).default(0),
    help: 'threads per forward pass (0: one per core but one, which is left to the HTTP thread)',
  },
  'max-batch': {
    env: 'ORTSERVE_MAX_BATCH',
    schema: integer(1, 1024).default(16),
    help: 'most sequences decoded together in one step',
  },
  'max-queue': {
    env: 'ORTSERVE_MAX_QUEUE',
    schema: integer(0, 1_000_000).default(256),
    help: 'most sequences waiting for a batch slot; beyond it requests get 429',
  },
  'max-kv-tokens': {
    env: 'ORTSERVE_MAX_KV_TOKENS',
    schema: integer(0).default(0),
    help: 'most tokens (prompt + max_tokens) running sequences may hold in the KV cache together (0: max-batch × context)',
  },
  'prefill-chunk': {
    env: 'ORTSERVE_PREFILL_CHUNK',
    schema: integer(1, 65536).default(16),
    help: 'tokens of each prompt prefilled between two decode steps (smaller: smoother streams, slower first token)',
  },
  'api-key': {
    env: 'ORTSERVE_API_KEYS',
    schema: z.array(apiKey).default([]),
    help: 'API key clients must send as "Authorization: Bearer KEY" on /v1/* (repeatable; env: comma-separated)',
    shown: 'none: no authentication',
    list: true,
  },
  'request-timeout': {
    env: 'ORTSERVE_REQUEST_TIMEOUT',
    schema: integer(0, 86_400).default(600),
    help: 'seconds a request may take before it is cancelled (504, or an error event on a stream); 0: no limit',
  },
  'receive-timeout': {
    env: 'ORTSERVE_RECEIVE_TIMEOUT',
    schema: integer(1, 3600).default(30),
    help: 'seconds a client has to send a whole request, headers and body (408 beyond)',
  },
  'shutdown-grace': {
    env: 'ORTSERVE_SHUTDOWN_GRACE',
    schema: integer(0, 86_400).default(30),
    help: 'seconds in-flight requests get to finish after SIGTERM or SIGINT',
  },
  'max-body-bytes': {
    env: 'ORTSERVE_MAX_BODY_BYTES',
    schema: integer(1).default(1024 * 1024),
    help: 'largest request body accepted (413 beyond)',
  },
  'max-n': {
    env: 'ORTSERVE_MAX_N',
    schema: integer(1, 1024).default(16),
    help: 'largest n or best_of: sequences generated per prompt',
  },
  'max-tokens-limit': {
    env: 'ORTSERVE_MAX_TOKENS_LIMIT',
    schema: integer(0).default(0),
    help: 'largest max_tokens (or max_completion_tokens) a request may ask for (0: the context length)',
  },
  'max-prompts': {
    env: 'ORTSERVE_MAX_PROMPTS',
    schema: integer(1, 65536).default(32),
    help: 'most prompts in one completions request',
  },
  'max-stop': {
    env: 'ORTSERVE_MAX_STOP',
    schema: integer(0, 1024).default(4),
    help: 'most stop strings in one request',
  },
  'max-stop-length': {
    env: 'ORTSERVE_MAX_STOP_LENGTH',
    schema: integer(1, 65536).default(256),
    help: 'longest stop string, in characters',
  },
  'max-messages': {
    env: 'ORTSERVE_MAX_MESSAGES',
    schema: integer(1, 1_000_000).default(512),
    help: 'most messages in one chat request',
  },
  'log-level': {
    env: 'ORTSERVE_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    help: 'log level (prompt text is logged at debug only)',
  },
} as const;

type OptionName = keyof typeof OPTIONS;

const ConfigSchema = z.object(
  Object.fromEntries(Object.entries(OPTIONS).map(([name, option]) => [name, option.schema])) as {
    [K in OptionName]: (typeof OPTIONS)[K]['schema'];
  },
);

type RawConfig = z.infer<typeof ConfigSchema>;

export interface ServerConfig {
  model: string;
  modelFile: string;
  servedModelName: string | undefined;
  host: string;
  port: number;
  device: 'cpu' | 'cuda';
  threads: number;
  maxBatch: number;
  maxQueue: number;
  maxKvTokens: number;
  prefillChunk: number;
  logLevel: RawConfig['log-level'];
  apiKeys: string[];
  /** Milliseconds; 0: none. */
  requestTimeoutMs: number;
  /** Time to receive a whole request (headers and body). */
  receiveTimeoutMs: number;
  shutdownGraceMs: number;
  limits: RequestLimits;
}

/** What a single request may ask for; each is a 400 (413 for the body) that names the limit. */
export interface RequestLimits {
  maxBodyBytes: number;
  maxN: number;
  /** 0: only the context length limits max_tokens. */
  maxTokens: number;
  maxPrompts: number;
  maxStop: number;
  maxStopLength: number;
  maxMessages: number;
}


/** A setting that does not validate; the message names the flag and its variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type CliCommand = { kind: 'help'; text: string } | { kind: 'serve'; config: ServerConfig };

export function helpText(): string {
  const lines = ['Usage: ortserve [options]', '', 'OpenAI-compatible completion server for ONNX decoder models.', '', 'Options:'];
  for (const [name, option] of Object.entries(OPTIONS) as [OptionName, (typeof OPTIONS)[OptionName]][]) {
    const fallback = 'shown' in option ? option.shown : option.schema.def.type === 'default' ? String(option.schema.parse(undefined)) : '';
    const env = 'alias' in option ? `${option.env}, ${option.alias}` : option.env;
    lines.push(`  --${name.padEnd(20)} ${option.help}`);
    lines.push(`  ${''.padEnd(22)} env ${env}${fallback ? `; default ${fallback}` : ''}`);
  }
  lines.push(`  --${'help'.padEnd(20)} show this help`);
  return lines.join('\n');
}

/** The configuration with every setting at its default. */
export function defaultConfig(): ServerConfig {
  const command = parseCli([]);
  if (command.kind !== 'serve') throw new Error('unreachable');
  return command.config;
}

/**
 * `--threads -1` as `--threads=-1`: parseArgs takes a value that starts with a dash for a flag,
 * and the schema, not a parse error, should tell what is wrong with a negative number.
 */
function joinNegativeNumbers(argv: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (/^--[a-z-]+$/.test(arg) && arg.slice(2) in OPTIONS && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/** Reads the configuration from command-line flags, falling back to environment variables. */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = {}): CliCommand {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joinNegativeNumbers(argv),
      options: {
        ...Object.fromEntries(
          Object.entries(OPTIONS).map(([name, option]) => [name, { type: 'string' as const, multiple: 'list' in option }]),
        ),
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\nRun ortserve --help for the options.`);
  }
  if (parsed.values.help) return { kind: 'help', text: helpText() };

  const raw: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(OPTIONS) as [OptionName, (typeof OPTIONS)[OptionName]][]) {
    // An empty variable counts as unset, as in most shells' `VAR= command` idiom.
    const setInEnv = (key: string) => (env[key] === '' ? undefined : env[key]);
    const fromEnv = setInEnv(option.env) ?? ('alias' in option ? setInEnv(option.alias) : undefined);
    let listFromEnv: string | string[] | undefined = fromEnv;
    if ('list' in option && fromEnv !== undefined) {
      listFromEnv = fromEnv.split(',').map((item) => item.trim()).filter(Boolean);
      // Set, but to nothing but commas and spaces: refused, or the API would be open by mistake.
      if (listFromEnv.length === 0 && parsed.values[name] === undefined) {
        throw new ConfigError(`invalid ${option.env}: it is set but holds no key (unset it to run without API keys)`);
      }
    }
    const value = parsed.values[name] ?? listFromEnv;
    if (value !== undefined) raw[name] = value;
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const name = String(issue.path[0]) as OptionName;
    throw new ConfigError(`invalid --${name} (env ${OPTIONS[name].env}): ${issue.message}`);
  }
  const c = result.data;
  return {
    kind: 'serve',
    config: {
      model: c.model,
      modelFile: c['model-file'],
      servedModelName: c['served-model-name'],
      host: c.host,
      port: c.port,
      device: c.device,
      threads: c.threads,
      maxBatch: c['max-batch'],
      maxQueue: c['max-queue'],
      maxKvTokens: c['max-kv-tokens'],
      prefillChunk: c['prefill-chunk'],
      logLevel: c['log-level'],
      apiKeys: c['api-key'],
      requestTimeoutMs: c['request-timeout'] * 1000,
      receiveTimeoutMs: c['receive-timeout'] * 1000,
      shutdownGraceMs: c['shutdown-grace'] * 1000,
      limits: {
        maxBodyBytes: c['max-body-bytes'],
        maxN: c['max-n'],
        maxTokens: c['max-tokens-limit'],
        maxPrompts: c['max-prompts'],
        maxStop: c['max-stop'],
        maxStopLength: c['max-stop-length'],
        maxMessages: c['max-messages'],
      },
    },
  };
}
