// Runs the `run(input)` export of a TypeScript module in a worker thread, outside the test
// runner's module realm: onnxruntime-node returns typed arrays of the main realm, which the
// runner's own copy of onnxruntime-common does not accept as tensor data.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { run } = await import(workerData.module);
parentPort.postMessage(await run(workerData.input));
