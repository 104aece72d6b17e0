import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import Fastify from 'fastify';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service } from 'kubernetes-models/v1/Service';
import { parse } from 'yaml';
import type { Engine } from '../../src/engine/client/engine.js';
import { ServerMetrics } from '../../src/http/metrics.js';

/** deploy/: each manifest valid for its kind, and the files consistent with each other and with the server. */

const read = (path: string) => readFileSync(new URL(`../../deploy/${path}`, import.meta.url), 'utf8');
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests are checked field by field
const manifest = (name: string): any => parse(read(`kubernetes/${name}`));

const deployment = manifest('deployment.yaml');
const service = manifest('service.yaml');
const pdb = manifest('pdb.yaml');
const hpa = manifest('hpa.yaml');
const pool = manifest('inferencepool.yaml');

/** The InferencePool CRD's schema for its v1 objects, as the API server validates them. */
function inferencePoolValidator() {
  const crd = parse(read('crds/inference.networking.k8s.io_inferencepools.yaml')) as {
    spec: { versions: { name: string; schema: { openAPIV3Schema: Record<string, unknown> } }[] };
  };
  const schema = crd.spec.versions.find((version) => version.name === 'v1')!.schema.openAPIV3Schema;
  return new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(schema);
}

async function serverMetricNames(): Promise<Set<string>> {
  const engine = { stats: { waiting: 0, running: 0, kvTokens: 0, prefixCacheTokens: 0, kvCapacity: 0 }, onStep: () => undefined } as unknown as Engine;
  const app = Fastify();
  const metrics = new ServerMetrics();
  metrics.attach('model', engine, 1);
  metrics.register(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const text = await (await fetch(`${url}/metrics`)).text();
  await app.close();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
}

describe('deploy/kubernetes', () => {
  it('each Kubernetes manifest is valid for its kind', () => {
    expect(() => new Deployment(deployment).validate()).not.toThrow();
    expect(() => new Service(service).validate()).not.toThrow();
    expect(() => new PodDisruptionBudget(pdb).validate()).not.toThrow();
    expect(() => new HorizontalPodAutoscaler(hpa).validate()).not.toThrow();
    // The checks are real: a wrong type fails.
    expect(() => new Deployment({ ...deployment, spec: { ...deployment.spec, replicas: 'three' } }).validate()).toThrow();
  });

  it("the InferencePool is valid against the Inference Extension's CRD", () => {
    const validate = inferencePoolValidator();
    expect(pool.apiVersion).toBe('inference.networking.k8s.io/v1');
    expect(validate(pool) ? [] : validate.errors).toEqual([]);
    expect(validate({ ...pool, spec: { ...pool.spec, targetPorts: [{ number: 70000 }] } })).toBe(false);
  });

  it('the Service, budget, autoscaler and pool select the pods the Deployment makes, on the port it opens', () => {
    const labels = deployment.spec.template.metadata.labels;
    const container = deployment.spec.template.spec.containers[0];
    const port = container.ports.find((entry: { name: string }) => entry.name === service.spec.ports[0].targetPort);
    expect(deployment.spec.selector.matchLabels).toEqual(labels);
    expect(service.spec.selector).toEqual(labels);
    expect(pdb.spec.selector.matchLabels).toEqual(labels);
    expect(pool.spec.selector.matchLabels).toEqual(labels);
    expect(port.containerPort).toBe(8000);
    expect(pool.spec.targetPorts).toEqual([{ number: port.containerPort }]);
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
  });

  it('probes the server’s own paths, and gives a stopping pod longer than its drain', () => {
    const container = deployment.spec.template.spec.containers[0];
    const env = Object.fromEntries(container.env.filter((entry: { value?: string }) => entry.value !== undefined).map((entry: { name: string; value: string }) => [entry.name, Number(entry.value)]));
    expect(container.readinessProbe.httpGet.path).toBe('/ready');
    expect(container.livenessProbe.httpGet.path).toBe('/health');
    expect(container.startupProbe.httpGet.path).toBe('/health');
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(env.ORTSERVE_DRAIN_DELAY + env.ORTSERVE_SHUTDOWN_GRACE);
    // The endpoints drop the pod within the drain delay.
    expect(container.readinessProbe.periodSeconds * container.readinessProbe.failureThreshold).toBeLessThan(env.ORTSERVE_DRAIN_DELAY);
  });

  it('the autoscaler and the endpoint picker read metrics the server exposes', async () => {
    const names = await serverMetricNames();
    expect(names).toContain(hpa.spec.metrics[0].pods.metric.name);
    const pickerFlags = [...read('kubernetes/inferencepool.yaml').matchAll(/--([a-z-]+-metric)=(\S+)/g)];
    expect(pickerFlags.map((match) => match[1])).toEqual(['total-queued-requests-metric', 'total-running-requests-metric', 'kv-cache-usage-percentage-metric']);
    for (const [, , metric] of pickerFlags) expect(names).toContain(metric);
  });
});
