/**
 * Writes docs/configuration.md from the settings table in src/options.ts:
 *
 *   npx tsx tools/config-docs.ts
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_OPTIONS, FIXED_LIMITS, shownDefault } from '../src/options.js';

export const CONFIGURATION_DOC = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

type OptionName = keyof typeof CONFIG_OPTIONS;

const INTRO = `<!-- Written by \`npx tsx tools/config-docs.ts\` from the options in src/options.ts: edit them there. -->

# Configuration

Every setting is a command-line flag or an environment variable; a flag wins over its variable, and
an empty variable counts as unset. \`ortserve --help\` (or \`npm start -- --help\`) lists the same
options in the same order.

Pass flags through npm after \`--\`:

\`\`\`bash
npm start -- --port 9000
npm start -- --model models/tinystories-gpt2 --model-file model_quantized.onnx
ORTSERVE_DEVICE=cuda npm start -- --model /path/to/exported-model
\`\`\`

The package also has an \`ortserve\` bin (\`bin/ortserve.js\`, which runs the TypeScript sources through
tsx), so \`npx ortserve --help\` works in the project, and \`ortserve\` after \`npm link\`.

An invalid setting exits with status 2 and a model that cannot be loaded with status 1; both print
the reason.
`;

/** A table cell: a pipe inside it would end the cell. */
const cell = (text: string) => text.replaceAll('|', '\\|');

function variablesCell(name: OptionName): string {
  const option = CONFIG_OPTIONS[name];
  if (option.alias) return `\`${option.env}\` or \`${option.alias}\` (\`${option.env}\` wins)`;
  return option.list ? `\`${option.env}\` (comma-separated)` : `\`${option.env}\``;
}

/** A value as code; a default described in words (or none) as it is. */
function defaultCell(name: OptionName): string {
  const shown = shownDefault(name);
  if (shown === '') return 'none';
  return shown === 'none' || shown.includes(' ') ? shown : `\`${shown}\``;
}

/** The text of docs/configuration.md: the options in the order of --help, each with its variables, default and description. */
export function configurationMarkdown(): string {
  const rows = (Object.keys(CONFIG_OPTIONS) as OptionName[]).map(
    (name) => `| \`--${name}\` | ${variablesCell(name)} | ${cell(defaultCell(name))} | ${cell(CONFIG_OPTIONS[name].doc)} |`,
  );
  const table = [
    '| Flag | Environment variable | Default | Meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    '| `--help`, `-h` | | | Show the options. |',
  ];
  const fixed = [
    '| Limit | Value | Meaning |',
    '| --- | --- | --- |',
    ...Object.entries(FIXED_LIMITS).map(([name, limit]) => `| \`${name}\` | ${limit.value} | ${cell(limit.doc)} |`),
  ];
  return `${INTRO}\n## Options\n\n${table.join('\n')}\n\n## Fixed limits\n\nLimits that are not options, named in \`FIXED_LIMITS\` (src/options.ts):\n\n${fixed.join('\n')}\n`;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(CONFIGURATION_DOC, configurationMarkdown());
  console.log(`wrote ${CONFIGURATION_DOC}`);
}
