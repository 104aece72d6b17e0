// Import rules for src/, checked by `npm run lint:imports` (part of `npm test`): any violation fails.

/**
 * The layers, top to bottom. A module may import its own layer and the layers below it, never one
 * above. A path ending in / is a folder.
 */
const LAYERS = [
  ['src/cli.ts'],
  ['src/server.ts'],
  ['src/openai/', 'src/anthropic/'],
  ['src/http/'],
  ['src/generation/'],
  ['src/engine/client/', 'src/engine/thread/', 'src/preprocess/'],
  ['src/engine/protocol.ts', 'src/grammar/', 'src/tool-calls/', 'src/reasoning/', 'src/model/', 'src/errors.ts', 'src/config.ts', 'src/options.ts'],
  ['src/util/'],
];

/** Upward imports that are allowed: importing module → the modules above it that it may import. */
const UPWARD_EXCEPTIONS = {
  // The error catalogue lists the preprocessor's rejection, an error class defined next to its cause.
  'src/errors.ts': ['src/preprocess/preprocessor.ts'],
  // The grammar threads are started by the engine thread and run on its side.
  'src/grammar/grammar-thread.ts': ['src/engine/thread/'],
};

const ENGINE_THREAD_SIDE = ['src/engine/thread/', 'src/grammar/grammar-thread.ts'];

function pattern(path) {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return path.endsWith('/') ? `^${escaped}` : `^${escaped}$`;
}

function slug(path) {
  return path.replace(/^src\//, '').replace(/\/$/, '').replace(/\.ts$/, '').replace(/\//g, '-');
}

function upwardRules() {
  const rules = [];
  LAYERS.forEach((layer, index) => {
    const above = LAYERS.slice(0, index).flat();
    if (above.length === 0) return;
    for (const member of layer) {
      const exceptionFiles = Object.keys(UPWARD_EXCEPTIONS).filter((file) => file.startsWith(member));
      rules.push({
        name: `upward-from-${slug(member)}`,
        comment: `${member} may not import a layer above it: ${above.join(', ')}.`,
        severity: 'error',
        from: { path: pattern(member), pathNot: exceptionFiles.map(pattern) },
        to: { path: above.map(pattern) },
      });
      for (const file of exceptionFiles) {
        rules.push({
          name: `upward-from-${slug(file)}`,
          comment: `${file} may not import a layer above it (${above.join(', ')}) except ${UPWARD_EXCEPTIONS[file].join(', ')}.`,
          severity: 'error',
          from: { path: pattern(file) },
          to: { path: above.map(pattern), pathNot: UPWARD_EXCEPTIONS[file].map(pattern) },
        });
      }
    }
  });
  return rules;
}

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Modules in src/ do not import each other in a circle.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'http-thread-to-engine-thread',
      comment:
        'Code on the HTTP thread never imports engine-thread code: the two sides share only src/engine/protocol.ts ' +
        '(the engine thread is started from a URL, not imported).',
      severity: 'error',
      from: { path: '^src/', pathNot: ENGINE_THREAD_SIDE.map(pattern) },
      to: { path: pattern('src/engine/thread/') },
    },
    {
      name: 'engine-thread-to-engine-client',
      comment: 'The engine thread does not import the client that talks to it; both read src/engine/protocol.ts.',
      severity: 'error',
      from: { path: ENGINE_THREAD_SIDE.map(pattern) },
      to: { path: pattern('src/engine/client/') },
    },
    {
      name: 'protocol-imports-a-side',
      comment:
        'src/engine/protocol.ts holds the types both threads read, so it imports from neither side nor from what ' +
        'sits on top of them.',
      severity: 'error',
      from: { path: pattern('src/engine/protocol.ts') },
      to: {
        path: ['src/engine/client/', 'src/engine/thread/', 'src/model/', 'src/http/', 'src/openai/', 'src/generation/'].map(pattern),
      },
    },
    ...upwardRules(),
    {
      name: 'src-to-non-source',
      comment: 'The server does not depend on tests, benchmarks, tools or scripts.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|tools|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: they tie modules together as much as value imports do.
    tsPreCompilationDeps: true,
  },
};
