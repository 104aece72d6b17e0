import * as ort from 'onnxruntime-node';

export interface GraphRuns {
  model: Uint8Array;
  /** Runs of the graph, each with its float32 feeds by name. */
  runs: Record<string, { data: Float32Array; dims: number[] }>[];
  output: string;
}

/** Each run's `output` (meant for runInWorker: sessions cannot run inside the test runner's realm). */
export async function run({ model, runs, output }: GraphRuns): Promise<Float32Array[]> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const results: Float32Array[] = [];
  for (const feeds of runs) {
    const tensors = Object.fromEntries(Object.entries(feeds).map(([name, { data, dims }]) => [name, new ort.Tensor('float32', Float32Array.from(data), dims)]));
    results.push((await session.run(tensors))[output]!.data as Float32Array);
  }
  await session.release();
  return results;
}
