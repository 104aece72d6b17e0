import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { ConfigError, helpText, parseCli } from '../../src/config.js';
import { CONFIG_OPTIONS, shownDefault, type ServerConfig } from '../../src/options.js';
import { ROOT } from '../helpers/cli.js';
import { configurationMarkdown } from '../../tools/config-docs.js';

/** The configuration parseCli returns for a serve command; fails the test on `--help`. */
function serve(argv: string[], env: NodeJS.ProcessEnv = {}): ServerConfig {
  const command = parseCli(argv, env);
  if (command.kind !== 'serve') throw new Error(`expected a serve command, got ${command.kind}`);
  return command.config;
}

/** The ConfigError parseCli throws. */
function configError(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseCli(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`parseCli(${JSON.stringify(argv)}) did not throw`);
}

const FLAGS: [flag: string, env: string][] = [
  ['model', 'ORTSERVE_MODEL'],
  ['model-file', 'ORTSERVE_MODEL_FILE'],
  ['served-model-name', 'ORTSERVE_SERVED_MODEL_NAME'],
  ['host', 'ORTSERVE_HOST'],
  ['port', 'PORT'],
  ['device', 'ORTSERVE_DEVICE'],
  ['threads', 'ORTSERVE_THREADS'],
  ['max-batch', 'ORTSERVE_MAX_BATCH'],
  ['max-queue', 'ORTSERVE_MAX_QUEUE'],
  ['max-kv-tokens', 'ORTSERVE_MAX_KV_TOKENS'],
  ['prefill-chunk', 'ORTSERVE_PREFILL_CHUNK'],
  ['api-key', 'ORTSERVE_API_KEYS'],
  ['request-timeout', 'ORTSERVE_REQUEST_TIMEOUT'],
  ['receive-timeout', 'ORTSERVE_RECEIVE_TIMEOUT'],
  ['shutdown-grace', 'ORTSERVE_SHUTDOWN_GRACE'],
  ['max-body-bytes', 'ORTSERVE_MAX_BODY_BYTES'],
  ['max-n', 'ORTSERVE_MAX_N'],
  ['max-tokens-limit', 'ORTSERVE_MAX_TOKENS_LIMIT'],
  ['max-prompts', 'ORTSERVE_MAX_PROMPTS'],
  ['max-stop', 'ORTSERVE_MAX_STOP'],
  ['max-stop-length', 'ORTSERVE_MAX_STOP_LENGTH'],
  ['max-messages', 'ORTSERVE_MAX_MESSAGES'],
  ['log-level', 'ORTSERVE_LOG_LEVEL'],
];

describe('parseCli', () => {
  describe('defaults', () => {
    it('serves the bundled model on 0.0.0.0:8000 on the CPU when nothing is set', () => {
      const config = serve([]);
      expect(config.port).toBe(8000);
      expect(config.host).toBe('0.0.0.0');
      expect(config.device).toBe('cpu');
      // No --model: the embedded model is served (src/model/catalogue.ts).
      expect(config.models).toEqual([]);
      expect(config.modelFile).toBeUndefined();
      expect(config.servedModelNames).toEqual([]);
      expect(config.threads).toBe(0);
      expect(config.maxBatch).toBe(16);
      expect(config.maxQueue).toBe(256);
      expect(config.maxKvTokens).toBe(0);
      expect(config.prefillChunk).toBe(16);
      expect(config.logLevel).toBe('info');
      expect(config.apiKeys).toEqual([]);
      expect(config.requestTimeoutMs).toBe(600_000);
      expect(config.receiveTimeoutMs).toBe(30_000);
      expect(config.shutdownGraceMs).toBe(30_000);
      expect(config.limits).toEqual({ maxBodyBytes: 1024 * 1024, maxN: 16, maxTokens: undefined, maxPrompts: 32, maxStop: 4, maxStopLength: 256, maxMessages: 512, maxJsonDepth: 64 });
    });

    it('ignores environment variables that are set but empty', () => {
      const config = serve([], { PORT: '', ORTSERVE_HOST: '', ORTSERVE_DEVICE: '' });
      expect(config.port).toBe(8000);
      expect(config.host).toBe('0.0.0.0');
      expect(config.device).toBe('cpu');
    });

    it('does not read the real process environment when no env is passed', () => {
      const saved = process.env.PORT;
      process.env.PORT = '1234';
      try {
        expect(serve([]).port).toBe(8000);
      } finally {
        if (saved === undefined) delete process.env.PORT;
        else process.env.PORT = saved;
      }
    });
  });

  describe('environment variables', () => {
    it('reads every ORTSERVE_* variable', () => {
      const config = serve([], {
        ORTSERVE_MODEL: '/models/x',
        ORTSERVE_MODEL_FILE: 'model_quantized.onnx',
        ORTSERVE_SERVED_MODEL_NAME: 'story-teller',
        ORTSERVE_HOST: '127.0.0.1',
        ORTSERVE_DEVICE: 'cuda',
        ORTSERVE_THREADS: '3',
        ORTSERVE_MAX_BATCH: '4',
        ORTSERVE_MAX_QUEUE: '5',
        ORTSERVE_MAX_KV_TOKENS: '4096',
        ORTSERVE_PREFILL_CHUNK: '32',
        ORTSERVE_LOG_LEVEL: 'debug',
      });
      expect(config).toMatchObject({
        models: ['/models/x'],
        modelFile: 'model_quantized.onnx',
        servedModelNames: ['story-teller'],
        host: '127.0.0.1',
        port: 8000,
        device: 'cuda',
        threads: 3,
        maxBatch: 4,
        maxQueue: 5,
        maxKvTokens: 4096,
        prefillChunk: 32,
        logLevel: 'debug',
      });
    });

    it('reads the limits, deadlines and API keys', () => {
      const config = serve([], {
        ORTSERVE_API_KEYS: ' sk-a ,sk-b,, ',
        ORTSERVE_REQUEST_TIMEOUT: '5',
        ORTSERVE_SHUTDOWN_GRACE: '0',
        ORTSERVE_MAX_BODY_BYTES: '2048',
        ORTSERVE_MAX_N: '2',
        ORTSERVE_MAX_TOKENS_LIMIT: '64',
        ORTSERVE_MAX_PROMPTS: '3',
        ORTSERVE_MAX_STOP: '1',
        ORTSERVE_MAX_STOP_LENGTH: '10',
        ORTSERVE_MAX_MESSAGES: '7',
        ORTSERVE_MAX_JSON_DEPTH: '16',
        ORTSERVE_GRAMMAR_CACHE_MB: '32',
        ORTSERVE_PREFIX_CACHE_PARTITION_HEADER: 'X-Tenant',
      });
      expect(config.apiKeys).toEqual(['sk-a', 'sk-b']);
      expect(config.requestTimeoutMs).toBe(5000);
      expect(config.shutdownGraceMs).toBe(0);
      expect(config.limits).toEqual({ maxBodyBytes: 2048, maxN: 2, maxTokens: 64, maxPrompts: 3, maxStop: 1, maxStopLength: 10, maxMessages: 7, maxJsonDepth: 16 });
      expect(config.grammarCacheBytes).toBe(32 * 1024 * 1024);
      expect(config.prefixCachePartitionHeader).toBe('x-tenant');
    });

    it('reads the port from PORT, as a number', () => {
      expect(serve([], { PORT: '9090' }).port).toBe(9090);
    });

    it('reads the port from ORTSERVE_PORT too', () => {
      expect(serve([], { ORTSERVE_PORT: '9191' }).port).toBe(9191);
    });
  });

  describe('flags', () => {
    it('read every setting from its flag', () => {
      const config = serve([
        '--model', 'some/dir',
        '--model-file', 'model_quantized.onnx',
        '--served-model-name', 'm',
        '--host', '::1',
        '--port', '0',
        '--device', 'cuda',
        '--threads', '2',
        '--max-batch', '1',
        '--max-queue', '0',
        '--max-kv-tokens', '100',
        '--prefill-chunk', '1',
        '--log-level', 'silent',
      ]);
      expect(config).toMatchObject({
        models: ['some/dir'],
        modelFile: 'model_quantized.onnx',
        servedModelNames: ['m'],
        host: '::1',
        port: 0,
        device: 'cuda',
        threads: 2,
        maxBatch: 1,
        maxQueue: 0,
        maxKvTokens: 100,
        prefillChunk: 1,
        logLevel: 'silent',
      });
    });

    it('take --api-key more than once, and it replaces ORTSERVE_API_KEYS', () => {
      expect(serve(['--api-key', 'sk-1', '--api-key=sk-2'], { ORTSERVE_API_KEYS: 'sk-env' }).apiKeys).toEqual(['sk-1', 'sk-2']);
    });

    it('refuse an empty --api-key without echoing keys', () => {
      expect(() => parseCli(['--api-key', 'sk-secret', '--api-key', ''])).toThrow(/--api-key/);
      expect(() => parseCli(['--api-key', 'sk-secret', '--api-key', ''])).not.toThrow(/sk-secret/);
    });

    it.each(['a b', ' k1', 'k1 ', 'tab\there', 'clé'])('refuse an --api-key no client could send (%p), without echoing it', (key) => {
      const error = configError(['--api-key', 'sk-fine', '--api-key', key]);
      expect(error.message).toContain('--api-key');
      expect(error.message).not.toContain(key.trim());
    });

    it.each([',', '  ', ' , ,'])('refuse ORTSERVE_API_KEYS=%p, which is set but holds no key', (value) => {
      expect(configError([], { ORTSERVE_API_KEYS: value }).message).toContain('holds no key');
    });

    it('take a negative number as a value, and say what is wrong with it', () => {
      expect(configError(['--threads', '-1']).message).toMatch(/^invalid --threads .*>=0/);
      expect(configError(['--port', '-5']).message).toContain('--port');
    });

    it('accept the --flag=value form', () => {
      expect(serve(['--port=8123']).port).toBe(8123);
    });

    it('override the environment', () => {
      const config = serve(['--port', '9000', '--host', '127.0.0.1', '--device', 'cpu'], {
        PORT: '7000',
        ORTSERVE_PORT: '7001',
        ORTSERVE_HOST: '10.0.0.1',
        ORTSERVE_DEVICE: 'cuda',
      });
      expect(config.port).toBe(9000);
      expect(config.host).toBe('127.0.0.1');
      expect(config.device).toBe('cpu');
    });

    it('override an invalid environment value instead of failing on it', () => {
      expect(serve(['--port', '9000'], { PORT: 'abc' }).port).toBe(9000);
    });
  });

  describe('--help', () => {
    it.each([['--help'], ['-h']])('%s returns the help text instead of a configuration', (flag) => {
      const command = parseCli([flag], { PORT: 'not a port' });
      expect(command.kind).toBe('help');
      if (command.kind === 'help') expect(command.text).toBe(helpText());
    });

    it.each(FLAGS)('lists --%s with its environment variable %s', (flag, env) => {
      const lines = helpText().split('\n');
      const at = lines.findIndex((line) => line.trimStart().startsWith(`--${flag} `));
      expect(at).toBeGreaterThanOrEqual(0);
      expect(lines[at + 1]).toContain(`env ${env}`);
    });

    it('lists ORTSERVE_PORT as the second variable for the port', () => {
      expect(helpText()).toContain('env PORT, ORTSERVE_PORT');
    });

    it('shows the defaults', () => {
      const text = helpText();
      expect(text).toContain('default 8000');
      expect(text).toContain('default 0.0.0.0');
      expect(text).toContain('default models/tinystories-gpt2');
      expect(text).toContain('default cpu');
    });
  });

  describe('invalid values', () => {
    it.each([
      [['--port', 'abc'], '--port'],
      [['--port', '70000'], '--port'],
      [['--port', '-1'], '--port'],
      [['--port', '80.5'], '--port'],
      [['--device', 'tpu'], '--device'],
      [['--threads', 'many'], '--threads'],
      [['--max-batch', '0'], '--max-batch'],
      [['--max-batch', '1025'], '--max-batch'],
      [['--max-queue', '-1'], '--max-queue'],
      [['--prefill-chunk', '0'], '--prefill-chunk'],
      [['--log-level', 'loud'], '--log-level'],
      [['--model', ''], '--model'],
    ])('%j throws a ConfigError naming %s', (argv, flag) => {
      expect(configError(argv).message).toContain(flag);
    });

    it('names the flag and the variable when the bad value came from the environment', () => {
      const message = configError([], { PORT: 'abc' }).message;
      expect(message).toContain('--port');
      expect(message).toContain('PORT');
      expect(configError([], { ORTSERVE_DEVICE: 'tpu' }).message).toContain('ORTSERVE_DEVICE');
    });

    it('rejects an unknown flag, naming it', () => {
      expect(configError(['--bogus', '1']).message).toContain('--bogus');
    });

    it('rejects a flag given without its value', () => {
      expect(configError(['--port']).message).toContain('--port');
    });

    it('rejects positional arguments', () => {
      expect(() => parseCli(['models/tinystories-gpt2'])).toThrow(ConfigError);
    });
  });
});

describe('blank and empty values', () => {
  it('rejects a blank number instead of reading it as 0', () => {
    for (const argv of [['--port', ''], ['--port', ' '], ['--max-queue', ''], ['--max-kv-tokens', ' ']]) {
      expect(() => parseCli(argv)).toThrow(ConfigError);
    }
    expect(() => parseCli([], { PORT: ' ' })).toThrow(/--port/);
  });

  it('treats an empty variable as unset, so ORTSERVE_PORT applies when PORT is empty', () => {
    const command = parseCli([], { PORT: '', ORTSERVE_PORT: '9000' });
    expect(command.kind === 'serve' && command.config.port).toBe(9000);
  });
});

describe('the configuration table in docs/configuration.md', () => {
  const written = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
  const rows = written
    .split('\n')
    .filter((line) => line.startsWith('| `--') && !line.startsWith('| `--help`'))
    .map((line) => line.split('|').map((cell) => cell.trim()));
  const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);

  it('lists every option, once, in the order of --help', () => {
    expect(rows.map((row) => names(row[1]!)[0])).toEqual(Object.keys(CONFIG_OPTIONS).map((name) => `--${name}`));
  });

  it.each(Object.entries(CONFIG_OPTIONS))('--%s: its variables and its default are those of the option', (name, option) => {
    const row = rows.find((cells) => names(cells[1]!)[0] === `--${name}`)!;
    expect(new Set(names(row[2]!))).toEqual(new Set([option.env, ...(option.alias ? [option.alias] : [])]));
    expect(row[3]!.replaceAll('`', '')).toBe(shownDefault(name as keyof typeof CONFIG_OPTIONS) || 'none');
  });

  it('is what tools/config-docs.ts writes from the options now', () => {
    const upToDate = written === configurationMarkdown();
    expect(upToDate ? 'up to date' : 'docs/configuration.md differs from the options in src/config.ts: run `npx tsx tools/config-docs.ts`').toBe('up to date');
  });
});


describe('switches', () => {
  it('--offline is a bare flag; its variables say 1/0, true/false, yes/no or on/off', () => {
    expect(serve([]).offline).toBe(false);
    expect(serve(['--offline']).offline).toBe(true);
    expect(serve([], { ORTSERVE_OFFLINE: 'yes' }).offline).toBe(true);
    expect(serve([], { HF_HUB_OFFLINE: '1' }).offline).toBe(true);
    expect(serve([], { HF_HUB_OFFLINE: '1', ORTSERVE_OFFLINE: 'off' }).offline).toBe(false);
    expect(configError([], { HF_HUB_OFFLINE: 'maybe' }).message).toBe('invalid --offline (env ORTSERVE_OFFLINE): must be 1 or 0 (true/false, yes/no, on/off)');
    expect(configError(['--offline=1']).message).toMatch(/--offline/);
  });
});

describe('ortserve pull', () => {
  it('takes one hub id and the options that choose its files', () => {
    expect(parseCli(['pull', 'onnx-community/Qwen2.5-0.5B-Instruct', '--dtype', 'q4', '--revision', 'v1.0'])).toEqual({
      kind: 'pull',
      id: 'onnx-community/Qwen2.5-0.5B-Instruct',
      revision: 'v1.0',
      dtype: 'q4',
      modelFile: undefined,
      logLevel: 'info',
    });
    expect(parseCli(['pull', 'org/name'], { ORTSERVE_DTYPE: 'fp16' })).toMatchObject({ kind: 'pull', dtype: 'fp16', revision: 'main' });
  });

  it('refuses what is not one hub id, and options that are not its own', () => {
    expect(configError(['pull']).message).toMatch(/^ortserve pull takes one Hugging Face model id \(org\/name\), got none/);
    expect(configError(['pull', 'a/b', 'c/d']).message).toMatch(/got a\/b c\/d/);
    expect(configError(['pull', './models/tinystories-gpt2']).message).toBe('ortserve pull: ./models/tinystories-gpt2 is not a Hugging Face model id (org/name)');
    expect(configError(['pull', 'a/b', '--port', '9000']).message).toMatch(/Unknown option '--port'[\s\S]*ortserve pull --help/);
    expect(configError(['pull', 'a/b', '--dtype', 'q4', '--model-file', 'model.onnx']).message).toBe('--model-file and --dtype both pick the graph: give one of them');
  });

  it('has its own help, and the server help names it', () => {
    const help = parseCli(['pull', '--help']);
    expect(help.kind).toBe('help');
    expect(help.kind === 'help' && help.text).toMatch(/^Usage: ortserve pull ORG\/NAME[\s\S]*HF_TOKEN[\s\S]*--revision[\s\S]*--dtype/);
    expect(helpText()).toContain('pull ORG/NAME');
  });
});

describe('a list variable set to nothing', () => {
  it('is refused, naming the variable, for models as for keys', () => {
    expect(configError([], { ORTSERVE_MODEL: ' , ' }).message).toBe('invalid ORTSERVE_MODEL: it is set but holds no value (unset it for the default)');
  });
});
