import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { genaiModelConfig } from './genai-config.js';
import { namedTemplates } from './chat-template.js';
import { ModelLoadError } from './errors.js';
import { isDirectory, isFile } from '../util/fs.js';

/** Where the parts of a model directory live on disk. */
export interface ModelFiles {
  dir: string;
  /** The ONNX decoder graph. */
  modelPath: string;
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json, its `chat_template` as a list of named templates from wherever the folder keeps them. */
  tokenizerConfig: Record<string, unknown>;
  /** How the folder was read (which graph, which template, from where), for the start-up log. */
  notes: string[];
}

/** Folders a graph may sit in: the top (Optimum's export) and `onnx/` (transformers.js repositories). */
const GRAPH_FOLDERS = ['', 'onnx'];

/**
 * Graph file names in the order they are chosen when the folder has several: full precision
 * first, then the smaller variants transformers.js repositories carry, each as `model*` and as
 * Optimum's older `decoder_model_merged*`.
 */
const GRAPH_VARIANTS = ['', '_fp16', '_quantized', '_int8', '_uint8', '_q4', '_q4f16', '_bnb4'];
const graphFiles = (variant: string) => [`model${variant}.onnx`, `decoder_model_merged${variant}.onnx`];
export const GRAPH_ORDER = GRAPH_VARIANTS.flatMap(graphFiles);

/** transformers.js' names for a graph's precision (`dtype`) and the suffix of the file that holds it. */
export const DTYPE_SUFFIXES = { fp32: '', fp16: '_fp16', q8: '_quantized', int8: '_int8', uint8: '_uint8', q4: '_q4', q4f16: '_q4f16', bnb4: '_bnb4' } as const;
export type Dtype = keyof typeof DTYPE_SUFFIXES;
export const DTYPES = Object.keys(DTYPE_SUFFIXES) as Dtype[];

export function readJsonFile(path: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ModelLoadError(`${what}: cannot read ${path}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`${what}: ${path} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelLoadError(`${what}: ${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}


/** Every `.onnx` file in the graph folders, relative to the model folder. */
function onnxFiles(dir: string): string[] {
  return GRAPH_FOLDERS.flatMap((sub) => {
    const folder = join(dir, sub);
    if (!isDirectory(folder)) return [];
    return readdirSync(folder)
      .filter((name) => name.endsWith('.onnx') && isFile(join(folder, name)))
      .map((name) => join(sub, name));
  });
}

/** The dtypes a listing has graphs of, for an error that says what there is. */
function listedDtypes(graphs: readonly string[]): Dtype[] {
  const names = new Set(graphs.map((file) => basename(file)));
  return DTYPES.filter((dtype) => graphFiles(DTYPE_SUFFIXES[dtype]).some((file) => names.has(file)));
}

/** Who names the graph, when one is named: `--model-file`, or genai_config.json. */
export interface NamedGraph {
  file: string;
  by: string;
}

/**
 * The graph to load among a folder's `.onnx` files (paths relative to the folder, as `onnxFiles`
 * lists them on disk and the hub's tree lists them remotely): the one named, that of the dtype asked
 * for, else the first of GRAPH_ORDER there is. `where` names the folder in errors.
 */
export function chooseGraph(graphs: readonly string[], where: string, named: NamedGraph | undefined, dtype?: Dtype): { path: string; note: string } {
  const listed = new Set(graphs);
  const places = (file: string) => GRAPH_FOLDERS.map((sub) => join(sub, file));
  const first = (file: string) => places(file).find((path) => listed.has(path));
  if (dtype !== undefined) {
    for (const file of graphFiles(DTYPE_SUFFIXES[dtype])) {
      const path = first(file);
      if (path) return { path, note: `graph ${path}: --dtype ${dtype}` };
    }
    const present = listedDtypes(graphs);
    throw new ModelLoadError(
      `no ${dtype} graph in ${where} or its onnx/ folder (looked for ${graphFiles(DTYPE_SUFFIXES[dtype]).join(', ')}); ${present.length > 0 ? `the folder has --dtype ${present.join(', ')}` : `its .onnx files are ${graphs.join(', ') || 'none'}: name one with --model-file`}`,
    );
  }
  if (named) {
    const path = first(named.file);
    if (path) return { path, note: `graph ${path}: named by ${named.by}` };
    throw new ModelLoadError(
      `model graph not found: ${named.by} names ${named.file}, looked for ${places(named.file).join(' and ')} in ${where}; the folder has ${graphs.length > 0 ? graphs.join(', ') : 'no .onnx files'}`,
    );
  }
  for (const file of GRAPH_ORDER) {
    const path = first(file);
    if (path) {
      const others = graphs.filter((name) => name !== path);
      const choice = others.length > 0 ? `the first of the documented order (the folder also has ${others.join(', ')}; --model-file picks another)` : 'the only graph there';
      return { path, note: `graph ${path}: ${choice}` };
    }
  }
  throw new ModelLoadError(
    `model graph not found in ${where} or its onnx/ folder: none of ${GRAPH_ORDER.join(', ')}; ${graphs.length > 0 ? `the folder has ${graphs.join(', ')}: name one with --model-file` : 'the folder has no .onnx files'}`,
  );
}

/**
 * Whether `name` is one of the external data files of the graph file `graph` beside it, as the
 * exporters name them: `model.onnx_data`, its `_data_1`, `_data_2`… chunks, or `model.onnx.data`.
 */
export const isExternalDataOf = (graph: string, name: string) => name.startsWith(`${graph}_data`) || name.startsWith(`${graph}.data`);

/** Whether a folder holds an ONNX graph, at its top or under `onnx/`. */
export const hasGraph = (dir: string) => onnxFiles(dir).length > 0;

function findGraph(dir: string, named: NamedGraph | undefined, dtype?: Dtype): { path: string; note: string } {
  const graph = chooseGraph(onnxFiles(dir), dir, named, dtype);
  return { path: join(dir, graph.path), note: graph.note };
}

/**
 * The folder's chat templates, from every place Hugging Face writes them: `chat_template.jinja`,
 * else `chat_template.json`, else tokenizer_config.json's `chat_template` (a text, or named
 * templates), plus the named ones in `additional_chat_templates/`. As named templates, `default` first.
 */
function readChatTemplates(dir: string, tokenizerConfig: Record<string, unknown>): { templates: { name: string; template: string }[]; source: string | undefined } {
  const named = namedTemplates(tokenizerConfig.chat_template);
  let source = named.size > 0 ? 'tokenizer_config.json' : undefined;
  const jinja = join(dir, 'chat_template.jinja');
  const json = join(dir, 'chat_template.json');
  if (isFile(jinja)) {
    named.set('default', readFileSync(jinja, 'utf8'));
    source = 'chat_template.jinja';
  } else if (isFile(json)) {
    const fromJson = readJsonFile(json, 'chat_template.json').chat_template;
    if (typeof fromJson === 'string') {
      named.set('default', fromJson);
      source = 'chat_template.json';
    }
  }
  const additional = join(dir, 'additional_chat_templates');
  if (isDirectory(additional)) {
    for (const file of readdirSync(additional).filter((name) => name.endsWith('.jinja'))) {
      const name = basename(file, '.jinja');
      if (!named.has(name)) named.set(name, readFileSync(join(additional, file), 'utf8'));
    }
  }
  return { templates: [...named].map(([name, template]) => ({ name, template })), source };
}

/**
 * Locates and reads the files of a model folder: Optimum's export, a transformers.js repository
 * (graphs under `onnx/`), or an onnxruntime-genai folder (`genai_config.json` instead of
 * `config.json`). `modelFile` picks the graph, or `dtype` by transformers.js' file names; without
 * them the folder's own is found (see GRAPH_ORDER). `generation_config.json` is optional; config, tokenizer.json and
 * tokenizer_config.json are required.
 */
export function readModelFiles(dir: string, modelFile?: string, dtype?: Dtype): ModelFiles {
  if (!isDirectory(dir)) throw new ModelLoadError(`model directory not found: ${dir}`);
  const notes: string[] = [];
  if (modelFile !== undefined && basename(modelFile) !== modelFile) {
    throw new ModelLoadError(`model file must be a file name inside the model directory, got ${modelFile}`);
  }
  if (modelFile !== undefined && dtype !== undefined) {
    throw new ModelLoadError(`--model-file (${modelFile}) and --dtype (${dtype}) both pick the graph: give one of them`);
  }
  const path = (name: string) => join(dir, name);
  const required = (name: string) => {
    if (!existsSync(path(name))) throw new ModelLoadError(`${name} is missing from ${dir}`);
    return readJsonFile(path(name), name);
  };
  const genai = isFile(path('genai_config.json')) ? genaiModelConfig(readJsonFile(path('genai_config.json'), 'genai_config.json')) : undefined;
  const named = modelFile !== undefined ? { file: modelFile, by: '--model-file' } : genai?.filename ? { file: genai.filename, by: 'genai_config.json' } : undefined;
  const graph = findGraph(dir, named, dtype);
  notes.push(graph.note);
  let config: Record<string, unknown>;
  if (isFile(path('config.json'))) config = required('config.json');
  else if (genai) {
    config = genai.config;
    notes.push('config: from genai_config.json (the folder has no config.json)');
  } else throw new ModelLoadError(`config.json is missing from ${dir} (nor is there a genai_config.json)`);
  const tokenizerJson = required('tokenizer.json');
  const tokenizerConfig = required('tokenizer_config.json');
  const { templates, source } = readChatTemplates(dir, tokenizerConfig);
  if (source) notes.push(`chat template: from ${source}${templates.length > 1 ? ` (named: ${templates.map((t) => t.name).join(', ')})` : ''}`);
  const generationConfig = isFile(path('generation_config.json')) ? readJsonFile(path('generation_config.json'), 'generation_config.json') : (genai?.generationConfig ?? {});
  return {
    dir,
    modelPath: graph.path,
    config,
    generationConfig,
    tokenizerJson,
    tokenizerConfig: { ...tokenizerConfig, chat_template: templates.length > 0 ? templates : undefined },
    notes,
  };
}
