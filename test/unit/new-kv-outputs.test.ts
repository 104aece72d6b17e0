import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { makeVariant } from '../../tools/model-variants.js';
import { join } from 'node:path';
import { addNewKvOutputs } from '../../src/engine/thread/graph/new-kv-outputs.js';
import {
  ATTRIBUTE_INT,
  ATTRIBUTE_NAME,
  ATTRIBUTE_TYPE,
  ATTRIBUTE_TYPE_INT,
  concat,
  GRAPH_INPUT,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  lengthField,
  MODEL_GRAPH,
  NODE_ATTRIBUTE,
  NODE_INPUT,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  stringField,
  TENSOR_TYPE_ELEM,
  TYPE_TENSOR,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  varintField,
} from '../../src/engine/thread/graph/onnx-proto.js';
import { DECODE_STEPS, PROMPT, type NewKvCheck } from '../helpers/new-kv-check.js';
import { MODEL_DIRS } from '../helpers/server.js';
import { runInWorker } from '../helpers/worker.js';

describe('addNewKvOutputs', () => {
  it.each([
    ['tiny-gpt2', 4],
    ['tiny-llama', 2],
  ])('%s: outputs the keys and values of the new positions, which appended give the same logits as present.*', async (name, kvHeads) => {
    const check = await runInWorker<NewKvCheck>(new URL('../helpers/new-kv-check.ts', import.meta.url), {
      modelPath: join(MODEL_DIRS[name]!, 'model.onnx'),
    });
    expect(check.newKvDims.map((dims) => dims.slice(0, 3))).toEqual([[1, kvHeads, PROMPT.length], ...Array(DECODE_STEPS).fill([1, kvHeads, 1])]);
    for (const difference of check.newKvDifferences) expect(difference).toBe(0);
    for (const difference of check.logitsDifferences) expect(difference).toBeLessThan(1e-4);
    expect(check.logitsMove).toBe(true);
  });

  it('in a merged decoder (one If on use_cache_branch): the same, through both branches', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ortserve-merged-'));
    try {
      makeVariant('merged', MODEL_DIRS['tiny-llama']!, join(root, 'merged'));
      const check = await runInWorker<NewKvCheck>(new URL('../helpers/new-kv-check.ts', import.meta.url), {
        modelPath: join(root, 'merged', 'decoder_model_merged.onnx'),
      });
      expect(check.newKvDims.map((dims) => dims.slice(0, 3))).toEqual([[1, 2, PROMPT.length], ...Array(DECODE_STEPS).fill([1, 2, 1])]);
      for (const difference of check.newKvDifferences) expect(difference).toBe(0);
      for (const difference of check.logitsDifferences) expect(difference).toBeLessThan(1e-4);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  describe('on made-up one-layer graphs', () => {
    const valueInfo = (name: string) =>
      concat([stringField(VALUE_INFO_NAME, name), lengthField(VALUE_INFO_TYPE, lengthField(TYPE_TENSOR, varintField(TENSOR_TYPE_ELEM, 1)))]);
    const node = (opType: string, inputs: string[], output: string, axis?: number) =>
      concat([
        ...inputs.map((input) => stringField(NODE_INPUT, input)),
        stringField(NODE_OUTPUT, output),
        stringField(NODE_OP_TYPE, opType),
        ...(axis === undefined
          ? []
          : [lengthField(NODE_ATTRIBUTE, concat([stringField(ATTRIBUTE_NAME, 'axis'), varintField(ATTRIBUTE_INT, axis), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT)]))]),
      ]);
    /** A graph whose present.0.key and present.0.value each come from `producer(kind)`. */
    const graph = (producer: (kind: string) => Uint8Array) =>
      lengthField(
        MODEL_GRAPH,
        concat(
          ['key', 'value'].flatMap((kind) => [
            lengthField(GRAPH_NODE, node('Identity', ['x'], `new.${kind}`)),
            lengthField(GRAPH_NODE, producer(kind)),
            lengthField(GRAPH_INPUT, valueInfo(`past_key_values.0.${kind}`)),
            lengthField(GRAPH_OUTPUT, valueInfo(`present.0.${kind}`)),
          ]),
        ),
      );

    it('edits present = Concat(past, new) along the sequence axis', () => {
      expect(addNewKvOutputs(graph((kind) => node('Concat', [`past_key_values.0.${kind}`, `new.${kind}`], `present.0.${kind}`, 2)))).toBeDefined();
    });

    it('leaves any other graph as it is', () => {
      const variants = [
        (kind: string) => node('Concat', [`new.${kind}`, `past_key_values.0.${kind}`], `present.0.${kind}`, 2),
        (kind: string) => node('Concat', [`past_key_values.0.${kind}`, `new.${kind}`], `present.0.${kind}`, 1),
        (kind: string) => node('Identity', [`past_key_values.0.${kind}`], `present.0.${kind}`),
        // A merged decoder's cache comes out of an If.
        (kind: string) => node('If', ['use_cache_branch'], `present.0.${kind}`),
        // One layer that fits is not enough.
        (kind: string) => node('Concat', [`past_key_values.0.${kind}`, `new.${kind}`], `present.0.${kind}`, kind === 'key' ? 2 : 3),
      ];
      for (const producer of variants) expect(addNewKvOutputs(graph(producer))).toBeUndefined();
    });
  });

  it('edits a graph only once', () => {
    const edited = addNewKvOutputs(readFileSync(join(MODEL_DIRS['tiny-llama']!, 'model.onnx')));
    expect(edited).toBeDefined();
    expect(addNewKvOutputs(edited!)).toBeUndefined();
  });

  it('refuses bytes that are not a protobuf message', () => {
    expect(() => addNewKvOutputs(Uint8Array.from([0x0a, 0xff]))).toThrow();
  });
});
