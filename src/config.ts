import { parseArgs } from 'node:util';
import { CONFIG_OPTIONS, ConfigSchema, scaled, shownDefault, type OptionName, type OptionSpec, type ServerConfig } from './options.js';

/** The configuration, read once from flags and environment variables against the settings table (options.ts). */


/** A setting that does not validate; the message names the flag and its variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type CliCommand = { kind: 'help'; text: string } | { kind: 'serve'; config: ServerConfig };

export function helpText(): string {
  const lines = ['Usage: ortserve [options]', '', 'OpenAI-compatible completion server for ONNX decoder models.', '', 'Options:'];
  for (const [name, option] of Object.entries(CONFIG_OPTIONS) as [OptionName, OptionSpec][]) {
    const fallback = shownDefault(name);
    const env = option.alias ? `${option.env}, ${option.alias}` : option.env;
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
    if (/^--[a-z-]+$/.test(arg) && arg.slice(2) in CONFIG_OPTIONS && next !== undefined && /^-\d/.test(next)) {
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
          Object.entries(CONFIG_OPTIONS).map(([name, option]) => [name, { type: 'string' as const, multiple: option.list === true }]),
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
  for (const [name, option] of Object.entries(CONFIG_OPTIONS) as [OptionName, OptionSpec][]) {
    // An empty variable counts as unset, as in most shells' `VAR= command` idiom.
    const setInEnv = (key: string) => (env[key] === '' ? undefined : env[key]);
    const fromEnv = setInEnv(option.env) ?? (option.alias ? setInEnv(option.alias) : undefined);
    let listFromEnv: string | string[] | undefined = fromEnv;
    if (option.list && fromEnv !== undefined) {
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
    throw new ConfigError(`invalid --${name} (env ${CONFIG_OPTIONS[name].env}): ${issue.message}`);
  }
  const settings: Record<string, unknown> = {};
  const limits: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(CONFIG_OPTIONS) as [OptionName, OptionSpec][]) {
    const value: unknown = result.data[name];
    (option.limit ? limits : settings)[option.field] = scaled(option, value);
  }
  return { kind: 'serve', config: { ...settings, limits } as ServerConfig };
}
