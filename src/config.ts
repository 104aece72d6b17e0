import { parseArgs } from 'node:util';
import { isHubId } from './model/hub/cache.js';
import { CONFIG_OPTIONS, ConfigSchema, scaled, shownDefault, type OptionName, type OptionSpec, type ServerConfig } from './options.js';

/** The configuration, read once from flags and environment variables against the settings table (options.ts). */


/** A setting that does not validate; the message names the flag and its variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The settings `ortserve pull` takes: which files of which revision, and how much it logs. */
const PULL_OPTIONS = ['revision', 'dtype', 'model-file', 'log-level'] as const satisfies readonly OptionName[];

export interface PullCommand {
  kind: 'pull';
  id: string;
  revision: string;
  dtype?: ServerConfig['dtype'];
  modelFile?: string;
  logLevel: ServerConfig['logLevel'];
}

export type CliCommand = { kind: 'help'; text: string } | { kind: 'serve'; config: ServerConfig } | PullCommand;

function optionLines(names: readonly OptionName[]): string[] {
  const lines: string[] = [];
  for (const name of names) {
    const option: OptionSpec = CONFIG_OPTIONS[name];
    const fallback = shownDefault(name);
    const env = option.alias ? `${option.env}, ${option.alias}` : option.env;
    lines.push(`  --${name.padEnd(20)} ${option.help}`);
    lines.push(`  ${''.padEnd(22)} env ${env}${fallback ? `; default ${fallback}` : ''}`);
  }
  lines.push(`  --${'help'.padEnd(20)} show this help`);
  return lines;
}

export function helpText(): string {
  return [
    'Usage: ortserve [options]',
    '       ortserve pull ORG/NAME [--dtype D] [--model-file F] [--revision R]',
    '',
    'OpenAI-compatible completion server for ONNX decoder models.',
    '',
    'Commands:',
    '  pull ORG/NAME          fetch what a Hugging Face model needs into the Hugging Face cache (ortserve pull --help)',
    '',
    'Options:',
    ...optionLines(Object.keys(CONFIG_OPTIONS) as OptionName[]),
  ].join('\n');
}

export function pullHelpText(): string {
  return [
    'Usage: ortserve pull ORG/NAME [options]',
    '',
    'Fetches into the Hugging Face cache what the model needs to be served: its configuration,',
    'tokenizer and chat template files and one graph with its external data, each checked against',
    'the hash the hub lists; what is already there is not fetched again, a cut transfer resumes.',
    'HF_TOKEN (or huggingface-cli login) for gated models, HF_ENDPOINT for a mirror, HF_HUB_CACHE or',
    'HF_HOME for where the cache is.',
    '',
    'Options:',
    ...optionLines(PULL_OPTIONS),
  ].join('\n');
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
    if (/^--[a-z-]+$/.test(arg) && arg.slice(2) in CONFIG_OPTIONS && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/** The options of `names` from parsed flags, else their environment variables, validated; the first invalid one is a ConfigError. */
function readOptions(values: Record<string, unknown>, env: NodeJS.ProcessEnv, names: readonly OptionName[]): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const name of names) {
    const option: OptionSpec = CONFIG_OPTIONS[name];
    // An empty variable counts as unset, as in most shells' `VAR= command` idiom.
    const setInEnv = (key: string) => (env[key] === '' ? undefined : env[key]);
    const fromEnv = setInEnv(option.env) ?? (option.alias ? setInEnv(option.alias) : undefined);
    let listFromEnv: string | string[] | undefined = fromEnv;
    if (option.list && fromEnv !== undefined) {
      listFromEnv = fromEnv.split(',').map((item) => item.trim()).filter(Boolean);
      // Set, but to nothing but commas and spaces: refused, or the API would be open by mistake.
      if (listFromEnv.length === 0 && values[name] === undefined) {
        throw new ConfigError(`invalid ${option.env}: it is set but holds no ${name === 'api-key' ? 'key (unset it to run without API keys)' : 'value (unset it for the default)'}`);
      }
    }
    const value = values[name] ?? listFromEnv;
    if (value !== undefined) raw[name] = value;
  }
  const result = ConfigSchema.pick(Object.fromEntries(names.map((name) => [name, true])) as Record<OptionName, true>).safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const name = String(issue.path[0]) as OptionName;
    throw new ConfigError(`invalid --${name} (env ${CONFIG_OPTIONS[name].env}): ${issue.message}`);
  }
  return result.data as Record<string, unknown>;
}

function parseFlags(argv: readonly string[], names: readonly OptionName[], positionals: boolean): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({
      args: joinNegativeNumbers(argv),
      options: {
        ...Object.fromEntries(
          names.map((name) => {
            const option: OptionSpec = CONFIG_OPTIONS[name];
            return [name, option.switch ? { type: 'boolean' as const } : { type: 'string' as const, multiple: option.list === true }];
          }),
        ),
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: positionals,
    });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\nRun ortserve ${positionals ? 'pull ' : ''}--help for the options.`);
  }
}

/** `ortserve pull ORG/NAME [options]`. */
function parsePull(argv: readonly string[], env: NodeJS.ProcessEnv): CliCommand {
  const parsed = parseFlags(argv, PULL_OPTIONS, true);
  if (parsed.values.help) return { kind: 'help', text: pullHelpText() };
  if (parsed.positionals.length !== 1) {
    throw new ConfigError(`ortserve pull takes one Hugging Face model id (org/name), got ${parsed.positionals.length === 0 ? 'none' : parsed.positionals.join(' ')}\nRun ortserve pull --help for the options.`);
  }
  const id = parsed.positionals[0]!;
  if (!isHubId(id)) throw new ConfigError(`ortserve pull: ${id} is not a Hugging Face model id (org/name)`);
  const data = readOptions(parsed.values, env, PULL_OPTIONS);
  const modelFile = data['model-file'] as ServerConfig['modelFile'];
  const dtype = data.dtype as ServerConfig['dtype'];
  if (modelFile !== undefined && dtype !== undefined) throw new ConfigError('--model-file and --dtype both pick the graph: give one of them');
  return { kind: 'pull', id, revision: data.revision as ServerConfig['revision'], dtype, modelFile, logLevel: data['log-level'] as ServerConfig['logLevel'] };
}

/** Reads the command from command-line flags, falling back to environment variables: serving (the default), `pull`, or help. */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = {}): CliCommand {
  if (argv[0] === 'pull') return parsePull(argv.slice(1), env);
  const names = Object.keys(CONFIG_OPTIONS) as OptionName[];
  const parsed = parseFlags(argv, names, false);
  if (parsed.values.help) return { kind: 'help', text: helpText() };
  const data = readOptions(parsed.values, env, names);
  const settings: Record<string, unknown> = {};
  const limits: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(CONFIG_OPTIONS) as [OptionName, OptionSpec][]) {
    const value: unknown = data[name];
    (option.limit ? limits : settings)[option.field] = scaled(option, value);
  }
  return { kind: 'serve', config: { ...settings, limits } as ServerConfig };
}
