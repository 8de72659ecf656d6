// The deployment and operations artifacts: deploy/kubernetes/ (Deployment,
// CronJob, KEDA ScaledObject, Service, ServiceMonitor, ConfigMap, Secret
// example), deploy/prometheus/alerts.yml, deploy/grafana/ (the dashboard),
// docker-compose.yml and the Dockerfile. Each is parsed and the fields that
// matter are checked: hardening, probes, where secrets come from, what KEDA
// scales, that every PromQL expression parses and reads only metrics login-etl
// exposes. The checks that guard security are also run against broken copies,
// so they are seen to fail.

import assert from "node:assert/strict";
import { MIN_SECRET_BYTES, OPTIONS } from "../../src/config/options.ts";
import {
  at,
  isTree,
  list,
  listFiles,
  maybe,
  parseYaml,
  readText,
  readYaml,
  strings,
  text,
  type Tree,
  tree,
} from "../helpers/documents.ts";
import { fromGrafana, metricNames, syntaxErrors } from "../helpers/promql.ts";
import { validate as validateDockerfile } from "dockerfile-utils";

const K8S = "deploy/kubernetes";

/**
 * The metric names the code exposes on /metrics, plus Prometheus' own `up`:
 * login-etl's own and the standard `process_*` ones (`src/ops/process_metrics.ts`).
 */
const COUNTERS = [
  "process_cpu_seconds_total",
  "login_etl_messages_received_total",
  "login_etl_rows_inserted_total",
  "login_etl_messages_redelivered_total",
  "login_etl_messages_rejected_total",
  "login_etl_messages_deleted_total",
  "login_etl_delete_failures_total",
  "login_etl_stage_failures_total",
  "login_etl_messages_refused_total",
] as const;
const HISTOGRAMS = ["login_etl_batch_messages", "login_etl_commit_duration_seconds"] as const;
const GAUGES = [
  "login_etl_messages_in_flight",
  "login_etl_receive_loops",
  "login_etl_queue_depth_messages",
  "login_etl_last_commit_timestamp_seconds",
  "login_etl_build_info",
  "process_resident_memory_bytes",
  "process_start_time_seconds",
] as const;
const EXPOSED: readonly string[] = [...COUNTERS, ...HISTOGRAMS, ...GAUGES];
/** Series names a query may read: histograms as their _bucket, _sum and _count series. */
const QUERYABLE = new Set<string>([
  ...COUNTERS,
  ...GAUGES,
  ...HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`]),
  "up",
]);

/** The metric a series name belongs to (a histogram's series map to the histogram). */
function metricOf(series: string): string {
  const histogram = HISTOGRAMS.find((h) => series.startsWith(`${h}_`));
  return histogram ?? series;
}

const SECRET_ENV = ["DATABASE_URL"] as const;

// --- Reading the manifests ---

interface Manifest {
  readonly file: string;
  readonly doc: Tree;
}

function manifests(): Manifest[] {
  const found: Manifest[] = [];
  for (const file of listFiles(K8S, [".yaml", ".yml"])) {
    for (const doc of readYaml(file)) {
      assert.ok(isTree(doc), `${file}: a document is not a mapping`);
      found.push({ file, doc });
    }
  }
  return found;
}

function manifest(kind: string, name?: string): Tree {
  const matches = manifests().filter((m) =>
    m.doc["kind"] === kind && (name === undefined || maybe(m.doc, "metadata", "name") === name)
  );
  assert.equal(matches.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}`);
  return (matches[0] as Manifest).doc;
}

function containers(podSpec: Tree): Tree[] {
  return list(podSpec, "containers").map((c) => {
    assert.ok(isTree(c));
    return c;
  });
}

/** Kubernetes quantities as numbers: cores for CPU, bytes for memory. */
function quantity(value: unknown): number {
  const match = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$/.exec(String(value));
  assert.ok(match?.[1] !== undefined, `not a quantity: ${String(value)}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
  };
  return Number(match[1]) * (match[2] === undefined ? 1 : factor[match[2]] ?? NaN);
}

// --- Checks, each a function so it also runs against broken copies ---

/** A pod spec runs as non-root, read-only, without privilege escalation or capabilities. */
function assertHardened(podSpec: Tree): void {
  const pod = tree(podSpec, "securityContext");
  for (const container of containers(podSpec)) {
    const own = tree(container, "securityContext");
    const effective = { ...pod, ...own };
    assert.equal(effective["runAsNonRoot"], true, "runAsNonRoot");
    const uid = effective["runAsUser"];
    assert.ok(typeof uid === "number" && uid > 0, "runAsUser is a non-zero uid");
    assert.equal(own["readOnlyRootFilesystem"], true, "readOnlyRootFilesystem");
    assert.equal(own["allowPrivilegeEscalation"], false, "allowPrivilegeEscalation");
    assert.notEqual(own["privileged"], true, "privileged");
    assert.ok(list(own, "capabilities", "drop").includes("ALL"), "capabilities drop ALL");
    assert.equal(maybe(own, "capabilities", "add"), undefined, "no capabilities added");
    const seccomp = maybe(own, "seccompProfile", "type") ?? maybe(pod, "seccompProfile", "type");
    assert.equal(seccomp, "RuntimeDefault", "seccompProfile RuntimeDefault");
  }
}

/** Every container sets CPU and memory requests and limits, requests within limits. */
function assertResources(podSpec: Tree): void {
  for (const container of containers(podSpec)) {
    for (const resource of ["cpu", "memory"]) {
      const request = quantity(at(container, "resources", "requests", resource));
      const limit = quantity(at(container, "resources", "limits", resource));
      assert.ok(request > 0 && request <= limit, `${resource}: request within limit`);
    }
  }
}

/**
 * DATABASE_URL comes from the `login-etl` Secret, never as a value; the HMAC
 * key is a file from that Secret, mounted read-only with mode 0400.
 */
function assertSecretsFromSecret(podSpec: Tree, secretName: string): void {
  const keys = list(podSpec, "volumes").filter(isTree).find((v) => v["name"] === "keys");
  assert.ok(keys !== undefined, "a keys volume");
  assert.equal(at(keys, "secret", "secretName"), secretName);
  assert.equal(at(keys, "secret", "defaultMode"), 0o400, "key files are owner-read-only");
  assert.equal(at(podSpec, "securityContext", "fsGroup"), 65532, "fsGroup lets the user read it");
  for (const container of containers(podSpec)) {
    const mount = list(container, "volumeMounts").filter(isTree).find((m) => m["name"] === "keys");
    assert.equal(mount?.["readOnly"], true);
    const file = list(container, "env").filter(isTree).find((e) =>
      e["name"] === "PII_HMAC_KEY_FILE"
    );
    assert.equal(file?.["value"], `${mount?.["mountPath"]}/PII_HMAC_KEY`);
    assert.ok(
      !list(container, "env").filter(isTree).some((e) => e["name"] === "PII_HMAC_KEY"),
      "the key is not a variable",
    );
    const env = list(container, "env").filter(isTree);
    for (const name of SECRET_ENV) {
      const entry = env.find((e) => e["name"] === name);
      assert.ok(entry !== undefined, `${name} is set`);
      assert.equal(entry["value"], undefined, `${name} has no literal value`);
      assert.equal(at(entry, "valueFrom", "secretKeyRef", "name"), secretName);
      assert.equal(at(entry, "valueFrom", "secretKeyRef", "key"), name);
    }
    for (const arg of [...list(container, "args"), ...(maybe(container, "command") as [] ?? [])]) {
      assert.doesNotMatch(String(arg), /^--(database-url|hmac-key)/, "secret as a flag");
    }
  }
}

function podSpecOf(kind: "Deployment" | "CronJob"): Tree {
  return kind === "Deployment"
    ? tree(manifest("Deployment", "login-etl"), "spec", "template", "spec")
    : tree(manifest("CronJob"), "spec", "jobTemplate", "spec", "template", "spec");
}

/** A deep copy of `value` with `edit` applied, for the broken-copy cases. */
function broken(value: Tree, edit: (copy: Tree) => void): Tree {
  const copy = structuredClone(value);
  edit(copy);
  return copy;
}

function firstContainer(podSpec: Tree): Tree {
  return containers(podSpec)[0] as Tree;
}

// --- Kubernetes ---

Deno.test("every YAML file under deploy/ and docker-compose.yml parses", async (t) => {
  const files = [
    ...listFiles(K8S, [".yaml", ".yml"]),
    ...listFiles("deploy/prometheus", [".yaml", ".yml"]),
    "docker-compose.yml",
  ];
  assert.ok(files.length >= 9, `found ${files.length} files`);
  for (const file of files) {
    await t.step(file, () => {
      const docs = readYaml(file);
      assert.ok(docs.length > 0 && docs.every(isTree), "one or more mappings");
    });
  }
  await t.step("a duplicate key is refused", () => {
    assert.throws(() => parseYaml("a: 1\na: 2\n", "dup.yaml"), SyntaxError);
  });
});

Deno.test("every manifest has an apiVersion, a kind and a name", () => {
  for (const { file, doc } of manifests()) {
    if (doc["kind"] === "Kustomization") continue;
    assert.equal(typeof doc["apiVersion"], "string", `${file}: apiVersion`);
    assert.equal(typeof doc["kind"], "string", `${file}: kind`);
    assert.match(text(doc, "metadata", "name"), /^[a-z0-9-]+$/, `${file}: metadata.name`);
  }
});

Deno.test("deployment runs as non-root with a read-only root filesystem", async (t) => {
  const spec = podSpecOf("Deployment");
  assertHardened(spec);
  const cases: { name: string; edit: (c: Tree) => void }[] = [
    {
      name: "runAsUser 0",
      edit: (c) => (tree(firstContainer(c), "securityContext")["runAsUser"] = 0),
    },
    {
      name: "runAsNonRoot false",
      edit: (c) => (tree(firstContainer(c), "securityContext")["runAsNonRoot"] = false),
    },
    {
      name: "writable root filesystem",
      edit: (c) => (tree(firstContainer(c), "securityContext")["readOnlyRootFilesystem"] = false),
    },
    {
      name: "privilege escalation allowed",
      edit: (c) => delete (tree(firstContainer(c), "securityContext")["allowPrivilegeEscalation"]),
    },
    {
      name: "capabilities kept",
      edit: (c) => (tree(firstContainer(c), "securityContext", "capabilities")["drop"] = []),
    },
    {
      name: "a capability added",
      edit: (
        c,
      ) => (tree(firstContainer(c), "securityContext", "capabilities")["add"] = ["NET_ADMIN"]),
    },
  ];
  for (const c of cases) {
    await t.step(`refuses ${c.name}`, () => {
      assert.throws(() => assertHardened(broken(spec, c.edit)), assert.AssertionError);
    });
  }
});

Deno.test("deployment sets CPU and memory requests and limits", async (t) => {
  const spec = podSpecOf("Deployment");
  assertResources(spec);
  await t.step("refuses a missing memory limit", () => {
    const copy = broken(spec, (c) => delete tree(firstContainer(c), "resources", "limits").memory);
    assert.throws(() => assertResources(copy), TypeError);
  });
  await t.step("refuses a request above its limit", () => {
    const copy = broken(spec, (c) => (tree(firstContainer(c), "resources", "requests").cpu = "2"));
    assert.throws(() => assertResources(copy), assert.AssertionError);
  });
});

Deno.test("deployment probes /healthz and /readyz on the metrics port it listens on", () => {
  const deployment = manifest("Deployment", "login-etl");
  const container = firstContainer(podSpecOf("Deployment"));
  const args = list(container, "args").map(String);
  assert.equal(args[0], "run");
  const listen = args[args.indexOf("--listen") + 1];
  assert.ok(args.includes("--listen") && listen !== undefined, "run --listen ADDRESS");
  const port = list(container, "ports").find((p) => maybe(p, "name") === "metrics");
  assert.ok(port !== undefined, "a container port named metrics");
  assert.equal(`:${at(port, "containerPort")}`, listen.replace(/^[^:]*/, ""));
  assert.equal(at(port, "containerPort"), 9464);

  const probePort = (probe: string) => at(container, probe, "httpGet", "port");
  assert.equal(at(container, "livenessProbe", "httpGet", "path"), "/healthz");
  assert.equal(at(container, "readinessProbe", "httpGet", "path"), "/readyz");
  for (const probe of ["livenessProbe", "readinessProbe"]) {
    assert.ok([9464, "metrics"].includes(probePort(probe) as string), `${probe} port`);
  }
  // run finishes in-flight work on SIGTERM: a 20 s long poll plus a commit.
  const grace = at(deployment, "spec", "template", "spec", "terminationGracePeriodSeconds");
  assert.ok(typeof grace === "number" && grace >= 50, `terminationGracePeriodSeconds ${grace}`);
});

Deno.test("deployment takes secrets from the Secret and settings from the ConfigMap", async (t) => {
  const spec = podSpecOf("Deployment");
  assertSecretsFromSecret(spec, "login-etl");
  const envFrom = list(firstContainer(spec), "envFrom");
  assert.ok(envFrom.some((e) => maybe(e, "configMapRef", "name") === "login-etl"));

  const config = tree(manifest("ConfigMap", "login-etl"), "data");
  assert.equal(typeof config["SQS_QUEUE_URL"], "string");
  assert.equal(typeof config["AWS_REGION"], "string");
  assert.equal(config["LOGIN_ETL_LOG_FORMAT"], "json");
  // Each key is a variable login-etl (or the AWS SDK, or Deno's OpenTelemetry) reads.
  const known = new Set(OPTIONS.flatMap((o) => (o.env === undefined ? [] : [o.env])));
  for (const key of Object.keys(config)) {
    assert.ok(known.has(key) || /^(AWS|OTEL)_/.test(key), `unknown setting ${key}`);
    assert.ok(!(SECRET_ENV as readonly string[]).includes(key), `${key} in a ConfigMap`);
  }

  await t.step("refuses a literal DATABASE_URL", () => {
    const copy = broken(spec, (c) => {
      const env = list(firstContainer(c), "env").filter(isTree);
      const entry = env.find((e) => e["name"] === "DATABASE_URL") as Tree;
      delete entry["valueFrom"];
      entry["value"] = "postgres://etl:hunter2@db:5432/analytics";
    });
    assert.throws(() => assertSecretsFromSecret(copy, "login-etl"));
  });
  await t.step("refuses a secret passed as a flag", () => {
    const copy = broken(spec, (c) => list(firstContainer(c), "args").push("--hmac-key-file=/k"));
    assert.throws(() => assertSecretsFromSecret(copy, "login-etl"), assert.AssertionError);
  });
});

Deno.test("the example Secret holds only placeholders login-etl refuses", () => {
  const secret = manifest("Secret", "login-etl");
  const data = tree(secret, "stringData");
  assert.deepEqual(Object.keys(data).sort(), ["DATABASE_URL", "PII_HMAC_KEY"]);
  for (const [key, value] of Object.entries(data)) {
    assert.match(String(value), /REPLACE|CHANGE|EXAMPLE/i, `${key} is a placeholder`);
    // Too short to pass as an HMAC key, not a URL: applied by mistake, it fails closed.
    assert.ok(new TextEncoder().encode(String(value)).length < MIN_SECRET_BYTES, key);
    assert.ok(!URL.canParse(String(value)), `${key} is not a URL`);
  }
  assert.equal(secret["data"], undefined, "no base64 data block");
});

Deno.test("nothing under deploy/ holds a database password or an HMAC key", () => {
  const credentialedUrl = /postgres(?:ql)?:\/\/[^:/\s@]+:([^@\s]+)@/g;
  const placeholders = /^(…|\.\.\.|\*\*\*|PASSWORD|<password>|REPLACE_ME|\$\{?\w+\}?)$/;
  const files = [
    ...listFiles(K8S, [".yaml", ".yml", ".md"]),
    ...listFiles("deploy/prometheus", [".yml", ".yaml"]),
    ...listFiles("deploy/grafana", [".json"]),
  ];
  for (const file of files) {
    const content = readText(file);
    for (const match of content.matchAll(credentialedUrl)) {
      assert.match(match[1] ?? "", placeholders, `${file}: a password in ${match[0]}`);
    }
    assert.doesNotMatch(content, /PII_HMAC_KEY\s*[:=]\s*["']?[A-Za-z0-9+/=_-]{32,}/, file);
  }
  for (const { file, doc } of manifests()) {
    for (const { path, value } of strings(doc)) {
      const key = path.at(-1);
      if (typeof key === "string" && (SECRET_ENV as readonly string[]).includes(key)) {
        assert.ok(
          doc["kind"] === "Secret" && /REPLACE/.test(value),
          `${file}: a value for ${key} at ${path.join(".")}`,
        );
      }
    }
  }
});

Deno.test("the service account is the one the pods use, annotated for IRSA", () => {
  const account = manifest("ServiceAccount", "login-etl");
  assert.match(
    text(account, "metadata", "annotations", "eks.amazonaws.com/role-arn"),
    /^arn:aws:iam::\d{12}:role\/[\w+=,.@-]+$/,
  );
  assert.equal(at(podSpecOf("Deployment"), "serviceAccountName"), "login-etl");
  assert.equal(at(podSpecOf("CronJob"), "serviceAccountName"), "login-etl");
});

Deno.test("the service exposes the metrics port of the Deployment's pods", () => {
  const service = manifest("Service", "login-etl");
  const podLabels = tree(
    manifest("Deployment", "login-etl"),
    "spec",
    "template",
    "metadata",
    "labels",
  );
  for (const [key, value] of Object.entries(tree(service, "spec", "selector"))) {
    assert.equal(podLabels[key], value, `selector ${key}`);
  }
  const port = list(service, "spec", "ports").find((p) => maybe(p, "name") === "metrics");
  assert.ok(port !== undefined);
  assert.equal(at(port, "port"), 9464);
  assert.ok(["metrics", 9464].includes(at(port, "targetPort") as string));

  const monitor = manifest("ServiceMonitor", "login-etl");
  const serviceLabels = tree(service, "metadata", "labels");
  for (const [key, value] of Object.entries(tree(monitor, "spec", "selector", "matchLabels"))) {
    assert.equal(serviceLabels[key], value, `ServiceMonitor selects ${key}`);
  }
  assert.equal(at(monitor, "spec", "endpoints", 0, "port"), "metrics");
  assert.equal(at(monitor, "spec", "endpoints", 0, "path"), "/metrics");
});

Deno.test("KEDA scales the Deployment with the aws-sqs-queue trigger on the configured queue", () => {
  const scaled = manifest("ScaledObject", "login-etl");
  const target = tree(scaled, "spec", "scaleTargetRef");
  assert.equal(target["name"], text(manifest("Deployment", "login-etl"), "metadata", "name"));
  assert.ok(target["kind"] === undefined || target["kind"] === "Deployment");

  const triggers = list(scaled, "spec", "triggers").filter(isTree);
  const sqs = triggers.find((tr) => tr["type"] === "aws-sqs-queue");
  assert.ok(sqs !== undefined, "an aws-sqs-queue trigger");
  const config = tree(manifest("ConfigMap", "login-etl"), "data");
  assert.equal(
    at(sqs, "metadata", "queueURL"),
    config["SQS_QUEUE_URL"],
    "queueURL = SQS_QUEUE_URL",
  );
  assert.equal(at(sqs, "metadata", "awsRegion"), config["AWS_REGION"], "awsRegion = AWS_REGION");
  assert.match(text(sqs, "metadata", "queueLength"), /^[1-9]\d*$/);

  const min = at(scaled, "spec", "minReplicaCount");
  const max = at(scaled, "spec", "maxReplicaCount");
  assert.ok(min === 0 || min === 1, "minReplicaCount 0 or 1");
  assert.ok(typeof max === "number" && max > (min as number), "maxReplicaCount above min");
  assert.equal(typeof at(scaled, "spec", "cooldownPeriod"), "number");

  // Authentication by pod identity: a TriggerAuthentication or the operator's own.
  const authName = maybe(sqs, "authenticationRef", "name");
  if (authName !== undefined) {
    const auth = manifest("TriggerAuthentication", String(authName));
    assert.match(text(auth, "spec", "podIdentity", "provider"), /^aws(-eks)?$/);
  } else {
    assert.equal(at(sqs, "metadata", "identityOwner"), "operator");
  }
});

Deno.test("cronjob drains with concurrencyPolicy Forbid and the Deployment's hardening", () => {
  const cron = manifest("CronJob");
  assert.equal(at(cron, "spec", "concurrencyPolicy"), "Forbid");
  assert.equal(text(cron, "spec", "schedule").trim().split(/\s+/).length, 5);
  const spec = podSpecOf("CronJob");
  const args = list(firstContainer(spec), "args");
  assert.equal(args[0], "drain");
  assert.ok(args.includes("--summary-json"));
  assert.ok(["Never", "OnFailure"].includes(String(spec["restartPolicy"])));
  assertHardened(spec);
  assertResources(spec);
  assertSecretsFromSecret(spec, "login-etl");
  assert.equal(firstContainer(spec)["image"], firstContainer(podSpecOf("Deployment"))["image"]);
});

Deno.test("kustomization lists only files that exist", () => {
  const [kustomization] = readYaml(`${K8S}/kustomization.yaml`);
  for (const resource of list(kustomization, "resources")) {
    assert.ok(listFiles(K8S, [String(resource)]).length === 1, `missing ${String(resource)}`);
  }
});

/** Pods a PodDisruptionBudget lets a drain evict at once, out of `replicas` healthy ones. */
function evictable(budget: Tree, replicas: number): number {
  const count = (value: unknown, roundUp: boolean) => {
    const percent = /^(\d+)%$/.exec(String(value));
    if (percent?.[1] === undefined) return Number(value);
    const exact = (replicas * Number(percent[1])) / 100;
    return roundUp ? Math.ceil(exact) : Math.floor(exact);
  };
  const spec = tree(budget, "spec");
  // Kubernetes rounds both up (minAvailable then protects more, maxUnavailable allows more).
  if (spec["maxUnavailable"] !== undefined) return count(spec["maxUnavailable"], true);
  return Math.max(0, replicas - count(spec["minAvailable"], true));
}

/** A budget covers the Deployment's pods only, lets a drain evict one at a time, never none. */
function assertBudget(budget: Tree): void {
  assert.equal(budget["apiVersion"], "policy/v1");
  const selector = tree(budget, "spec", "selector", "matchLabels");
  const labelsOf = (template: Tree) => tree(template, "metadata", "labels");
  const deployment = labelsOf(tree(manifest("Deployment", "login-etl"), "spec", "template"));
  const cron = labelsOf(tree(manifest("CronJob"), "spec", "jobTemplate", "spec", "template"));
  const selects = (labels: Tree) =>
    Object.entries(selector).every(([key, value]) => labels[key] === value);
  assert.ok(selects(deployment), "selects the Deployment's pods");
  assert.ok(!selects(cron), "not the CronJob's");
  const replicas = at(manifest("Deployment", "login-etl"), "spec", "replicas");
  const scaled = manifest("ScaledObject", "login-etl");
  const fewest = Math.min(Number(replicas), Number(at(scaled, "spec", "minReplicaCount")) || 1);
  const most = Number(at(scaled, "spec", "maxReplicaCount"));
  assert.ok(evictable(budget, fewest) >= 1, `a drain can evict the pod of ${fewest} replica(s)`);
  assert.equal(evictable(budget, most), 1, `one of ${most} at a time`);
  assert.equal(maybe(budget, "spec", "unhealthyPodEvictionPolicy"), "AlwaysAllow");
}

Deno.test("evictable() counts as Kubernetes does", () => {
  const budget = (spec: Tree): Tree => ({ spec });
  assert.equal(evictable(budget({ maxUnavailable: 1 }), 1), 1);
  assert.equal(evictable(budget({ maxUnavailable: "25%" }), 10), 3);
  assert.equal(evictable(budget({ minAvailable: 1 }), 1), 0);
  assert.equal(evictable(budget({ minAvailable: "50%" }), 3), 1);
});

Deno.test("the PodDisruptionBudget lets drains evict one consumer pod at a time, and is applied", async (t) => {
  const budget = manifest("PodDisruptionBudget", "login-etl");
  assertBudget(budget);
  const [kustomization] = readYaml(`${K8S}/kustomization.yaml`);
  const applied = list(kustomization, "resources").map(String).flatMap((file) =>
    readYaml(`${K8S}/${file}`)
  );
  assert.ok(applied.some((doc) => isTree(doc) && doc["kind"] === "PodDisruptionBudget"));
  const cases: { name: string; edit: (b: Tree) => void }[] = [
    {
      name: "minAvailable 1 (blocks every drain at one replica)",
      edit: (b) => {
        delete tree(b, "spec")["maxUnavailable"];
        tree(b, "spec")["minAvailable"] = 1;
      },
    },
    { name: "all pods at once", edit: (b) => (tree(b, "spec")["maxUnavailable"] = "100%") },
    {
      name: "a selector that misses the Deployment",
      edit: (
        b,
      ) => (tree(b, "spec", "selector", "matchLabels")["app.kubernetes.io/component"] = "drain"),
    },
    {
      name: "a selector that takes the CronJob's pods too",
      edit: (b) => delete tree(b, "spec", "selector", "matchLabels")["app.kubernetes.io/component"],
    },
    {
      name: "unready pods protected",
      edit: (b) => delete tree(b, "spec")["unhealthyPodEvictionPolicy"],
    },
  ];
  for (const c of cases) {
    await t.step(`refuses ${c.name}`, () => {
      assert.throws(() => assertBudget(broken(budget, c.edit)), assert.AssertionError);
    });
  }
});

// --- PromQL: the dashboard and the alert rules ---

Deno.test("metricNames() finds the metrics an expression selects", async (t) => {
  const cases = [
    { input: 'sum by (reason) (rate(a_total{job="x"}[5m]))', expected: ["a_total"] },
    { input: "time() - max(b) > 600 and on (job) c > 0", expected: ["b", "c"] },
    { input: "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", expected: ["h_bucket"] },
    { input: 'absent(up{job="login-etl"})', expected: ["up"] },
    { input: '{__name__="d", job="x"}', expected: ["d"] },
    { input: "sum(rate(e[5m])) / sum(rate(e[5m]))", expected: ["e"] },
  ];
  for (const c of cases) {
    await t.step(c.input, () => {
      assert.deepEqual(syntaxErrors(c.input), []);
      assert.deepEqual(metricNames(c.input), c.expected);
    });
  }
  await t.step("syntaxErrors() reports broken expressions", () => {
    for (const bad of ["rate(a[5m]", "sum(rate(a[5m])) by (le", 'a{job="x"', "rat(a[5m])"]) {
      assert.notDeepEqual(syntaxErrors(bad), [], bad);
    }
  });
});

/** Checks one PromQL expression: it parses and reads only login-etl's series. */
function assertKnownMetrics(expr: string, where: string): string[] {
  assert.deepEqual(syntaxErrors(expr), [], `${where}: does not parse: ${expr}`);
  const names = metricNames(expr);
  assert.ok(names.length > 0, `${where}: reads no metric`);
  for (const name of names) assert.ok(QUERYABLE.has(name), `${where}: unknown metric ${name}`);
  return names;
}

interface Panel {
  readonly title: string;
  readonly panel: Tree;
}

function dashboard(): Tree {
  const parsed: unknown = JSON.parse(readText("deploy/grafana/login-etl-dashboard.json"));
  assert.ok(isTree(parsed));
  return parsed;
}

function panels(dash: Tree): Panel[] {
  // Rows may nest panels; flatten them.
  const flat: Panel[] = [];
  const walk = (items: unknown[]) => {
    for (const item of items) {
      assert.ok(isTree(item));
      if (item["type"] === "row") walk((item["panels"] as unknown[] | undefined) ?? []);
      else flat.push({ title: String(item["title"]), panel: item });
    }
  };
  walk(list(dash, "panels"));
  return flat;
}

Deno.test("the dashboard is a Grafana dashboard with distinct panels on a Prometheus variable", () => {
  const dash = dashboard();
  const version = at(dash, "schemaVersion");
  assert.ok(typeof version === "number" && version >= 36 && version <= 41, `schema ${version}`);
  assert.equal(typeof at(dash, "uid"), "string");
  assert.equal(typeof at(dash, "title"), "string");
  const variables = list(dash, "templating", "list").filter(isTree);
  const source = variables.find((v) => v["type"] === "datasource");
  assert.equal(source?.["query"], "prometheus");

  const all = panels(dash);
  const ids = all.map((p) => p.panel["id"]);
  assert.equal(new Set(ids).size, ids.length, "panel ids are distinct");
  const cells = new Set<string>();
  for (const { title, panel } of all) {
    assert.equal(at(panel, "datasource", "uid"), `\${${String(source?.["name"])}}`, title);
    const [x, y, w, h] = ["x", "y", "w", "h"].map((k) => at(panel, "gridPos", k) as number);
    assert.ok(x !== undefined && y !== undefined && w !== undefined && h !== undefined);
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `${title}: inside the 24-column grid`);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `${title} overlaps another panel`);
        cells.add(`${i},${j}`);
      }
    }
    assert.ok(list(panel, "targets").length > 0, `${title}: has queries`);
  }
});

Deno.test("every dashboard query parses and reads only metrics login-etl exposes", () => {
  const used = new Set<string>();
  for (const { title, panel } of panels(dashboard())) {
    for (const target of list(panel, "targets")) {
      const expr = fromGrafana(text(target, "expr"));
      for (const name of assertKnownMetrics(expr, title)) used.add(metricOf(name));
    }
  }
  for (const variable of list(dashboard(), "templating", "list").filter(isTree)) {
    const query = maybe(variable, "query", "query");
    const match = typeof query === "string" ? /^label_values\((\w+),/.exec(query) : null;
    if (match?.[1] !== undefined) {
      assert.ok(QUERYABLE.has(match[1]), `variable ${variable["name"]}`);
    }
  }
  // A panel for each metric the code exposes.
  assert.deepEqual(EXPOSED.filter((m) => !used.has(m)), [], "metrics without a panel");
  assert.throws(() => assertKnownMetrics("rate(login_etl_messages_recieved_total[5m])", "typo"));
});

Deno.test("the memory panel names the memory limit and request the deployment sets", () => {
  // Prometheus cannot see the pod's limit through login-etl's metrics, so the
  // panel's description says it; this keeps the two in step.
  const resources = tree(firstContainer(podSpecOf("Deployment")), "resources");
  const memory = panels(dashboard()).find((p) => p.title === "Resident memory");
  assert.ok(memory !== undefined, "a Resident memory panel");
  assert.equal(
    text(list(memory.panel, "targets")[0], "expr"),
    'process_resident_memory_bytes{job=~"$job"}',
  );
  const description = String(memory.panel["description"]);
  for (const kind of ["limits", "requests"]) {
    const value = String(at(resources, kind, "memory"));
    assert.ok(description.includes(value), `${kind} ${value} in: ${description}`);
  }
});

interface Rule {
  readonly alert: string;
  readonly rule: Tree;
  readonly expr: string;
}

function alertRules(): Rule[] {
  const [file] = readYaml("deploy/prometheus/alerts.yml");
  const rules: Rule[] = [];
  for (const group of list(file, "groups")) {
    assert.equal(typeof at(group, "name"), "string");
    for (const rule of list(group, "rules")) {
      assert.ok(isTree(rule));
      rules.push({ alert: text(rule, "alert"), rule, expr: text(rule, "expr") });
    }
  }
  return rules;
}

Deno.test("every alert parses, reads only login-etl's metrics, and has a severity and a summary", () => {
  const rules = alertRules();
  const names = rules.map((r) => r.alert);
  assert.equal(new Set(names).size, names.length, "alert names are distinct");
  for (const { alert, rule, expr } of rules) {
    assert.match(alert, /^[A-Z][A-Za-z0-9]+$/);
    assertKnownMetrics(expr, alert);
    assert.ok(
      ["critical", "warning", "info"].includes(String(maybe(rule, "labels", "severity"))),
      alert,
    );
    assert.ok(text(rule, "annotations", "summary").trim().length > 0, `${alert}: summary`);
    const wait = maybe(rule, "for");
    assert.ok(wait === undefined || /^\d+[smh]$/.test(String(wait)), `${alert}: for`);
  }
});

Deno.test("the alerts cover rejects, lag, missing commits, delete failures and a down consumer", () => {
  const rules = alertRules();
  const find = (what: string, test: (r: Rule) => boolean) => {
    const found = rules.find(test);
    assert.ok(found !== undefined, `no alert for ${what}`);
    return found;
  };
  const reads = (r: Rule, ...metrics: string[]) =>
    metrics.every((m) => metricNames(r.expr).includes(m));

  const rejects = find(
    "rejects rising",
    (r) =>
      reads(r, "login_etl_messages_rejected_total", "login_etl_messages_received_total") &&
      /\//.test(r.expr),
  );
  assert.equal(maybe(rejects.rule, "for"), "10m");
  find(
    "lag growing",
    (r) => reads(r, "login_etl_queue_depth_messages") && /\bderiv\(|\bdelta\(/.test(r.expr),
  );
  find(
    "no commit while the queue is not empty",
    (r) =>
      reads(r, "login_etl_last_commit_timestamp_seconds", "login_etl_queue_depth_messages") &&
      /time\(\)/.test(r.expr) && /queue_depth_messages\)?\s*>\s*0\b/.test(r.expr),
  );
  find("delete failures", (r) => reads(r, "login_etl_delete_failures_total"));
  find("consumer down", (r) => reads(r, "up") && /==\s*0/.test(r.expr));
  find("consumer absent", (r) => reads(r, "up") && /\babsent\(/.test(r.expr));
});

// --- Containers ---

Deno.test("docker-compose.yml has the exercise's two services and login-etl under the etl profile", () => {
  const [compose] = readYaml("docker-compose.yml");
  const services = tree(compose, "services");
  assert.deepEqual(Object.keys(services).sort(), ["localstack", "login-etl", "postgres"]);
  assert.equal(at(services, "localstack", "image"), "fetchdocker/data-takehome-localstack");
  assert.equal(at(services, "postgres", "image"), "fetchdocker/data-takehome-postgres");
  assert.equal(maybe(services, "localstack", "profiles"), undefined, "localstack always starts");
  assert.equal(maybe(services, "postgres", "profiles"), undefined, "postgres always starts");

  const etl = tree(services, "login-etl");
  assert.deepEqual(etl["profiles"], ["etl"]);
  const context = maybe(etl, "build", "context") ?? etl["build"];
  assert.equal(context, ".");
  assert.deepEqual(etl["command"], ["run", "--listen", ":9464"]);
  assert.ok(list(etl, "ports").map(String).some((p) => /(^|:)9464:9464$/.test(p)));
  const dependsOn = etl["depends_on"];
  const deps = Array.isArray(dependsOn) ? dependsOn : Object.keys(tree(etl, "depends_on"));
  assert.deepEqual([...deps].sort(), ["localstack", "postgres"]);

  const env = tree(etl, "environment");
  assert.equal(env["SQS_QUEUE_URL"], "http://localstack:4566/000000000000/login-queue");
  assert.equal(env["DATABASE_URL"], "postgres://postgres:postgres@postgres:5432/postgres");
  // From the host's environment, never written into the file.
  assert.match(String(env["PII_HMAC_KEY"]), /^\$\{PII_HMAC_KEY(:?[-?][^}]*)?\}$/);
});

Deno.test("docker-compose.yml's LocalStack and Postgres have healthchecks, and login-etl waits for them", () => {
  const [compose] = readYaml("docker-compose.yml");
  const services = tree(compose, "services");
  for (const name of ["localstack", "postgres"]) {
    const check = tree(services, name, "healthcheck");
    const test = list(check, "test").map(String);
    assert.equal(test[0], "CMD", `${name}: exec form, no shell needed in the image`);
    for (const key of ["interval", "timeout"]) assert.match(String(check[key]), /^\d+s$/, key);
    assert.ok(Number(check["retries"]) >= 3);
  }
  // What they ask is checked against real servers in tests/integration/compose_health_test.ts.
  const localstack = list(services, "localstack", "healthcheck", "test").map(String);
  assert.equal(localstack[1], "curl");
  assert.ok(localstack.includes("--fail"));
  assert.ok(localstack.some((a) => /(^|&)QueueName=login-queue(&|$)/.test(a)));
  const postgres = list(services, "postgres", "healthcheck", "test").map(String);
  assert.equal(postgres[1], "pg_isready");
  assert.equal(postgres[postgres.indexOf("--host") + 1], "127.0.0.1", "over TCP");

  const dependsOn = tree(services, "login-etl", "depends_on");
  for (const name of ["localstack", "postgres"]) {
    assert.equal(at(dependsOn, name, "condition"), "service_healthy", name);
  }
});

interface Instruction {
  readonly op: string;
  readonly args: string;
}

/** Dockerfile text as instructions: continuations joined, comments and blank lines dropped. */
function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const [op = "", ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(" ") };
    });
}

interface Stage {
  /** The FROM argument: an image or an earlier stage's name, maybe with ${ARG}s. */
  readonly from: string;
  readonly name: string | undefined;
  readonly steps: Instruction[];
}

interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  readonly globalArgs: Map<string, string>;
  readonly stages: Stage[];
}

function parseDockerfile(text: string): Dockerfile {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const step of instructions(text)) {
    if (step.op === "FROM") {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(step.args);
      assert.ok(match?.[1] !== undefined, `FROM ${step.args}`);
      stages.push({ from: match[1], name: match[2]?.toLowerCase(), steps: [] });
    } else if (stages.length === 0) {
      assert.equal(step.op, "ARG", "only ARG may come before the first FROM");
      const [name = "", value = ""] = step.args.split("=");
      globalArgs.set(name, value);
    } else {
      stages.at(-1)?.steps.push(step);
    }
  }
  return { globalArgs, stages };
}

/** `${NAME}` and `$NAME` replaced from `values`. */
function substitute(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
    const name = a ?? b ?? "";
    assert.ok(name in values, `\${${name}} has no value`);
    return values[name] ?? "";
  });
}

/**
 * The file of the build context that ends up as /login-etl in the final image
 * for one build: the final stage's COPY --from, followed through FROM
 * ${...} stage choices, to a COPY of a context file. Fails where a build would.
 */
function binaryCopied(file: Dockerfile, args: Record<string, string>): string {
  const values = { ...Object.fromEntries(file.globalArgs), ...args };
  const stage = (name: string): Stage => {
    const found = file.stages.find((s) => s.name === name);
    assert.ok(found !== undefined, `no stage named ${name}`);
    return found;
  };
  let current = file.stages.at(-1) as Stage;
  let path = "/login-etl";
  for (let hops = 0; hops < 10; hops++) {
    const copy = current.steps.find((s) => s.op === "COPY" && s.args.split(/\s+/).at(-1) === path);
    if (copy === undefined) {
      // Not made here: it comes from the stage this one is built FROM.
      current = stage(substitute(current.from, values));
      continue;
    }
    const words = copy.args.split(/\s+/);
    const sources = words.filter((w) => !w.startsWith("--")).slice(0, -1);
    assert.equal(sources.length, 1, `COPY ${copy.args} copies one file`);
    const from = words.find((w) => w.startsWith("--from="))?.slice("--from=".length);
    if (from === undefined) return substitute(sources[0] ?? "", values);
    path = sources[0] ?? "";
    current = stage(substitute(from, values));
  }
  throw new Error("stage chain too long");
}

const DOCKERFILE = parseDockerfile(readText("Dockerfile"));
/** Docker's architecture names → the Linux targets of `make build-all`. */
const LINUX_TARGET_OF: Record<string, string> = {
  amd64: "x86_64-unknown-linux-gnu",
  arm64: "aarch64-unknown-linux-gnu",
};

Deno.test("dockerfile-utils finds no problem in the Dockerfile, and finds planted ones", () => {
  assert.deepEqual(validateDockerfile(readText("Dockerfile")).map((d) => d.message), []);
  for (
    const bad of [
      "FROM scratch\nCOPY dist/login-etl\n",
      "FROM scratch AS a AS b\n",
      "FROM scratch\nEXPOSE nine\n",
    ]
  ) {
    assert.notDeepEqual(validateDockerfile(bad), [], bad);
  }
});

Deno.test("the Dockerfile's final stage is distroless nonroot with the binary as its entry point", () => {
  const final = DOCKERFILE.stages.at(-1) as Stage;
  assert.match(final.from, /^gcr\.io\/distroless\/cc-debian12:nonroot(@sha256:[0-9a-f]{64})?$/);
  // No stage pins a platform: the builder chooses one per target platform.
  assert.doesNotMatch(readText("Dockerfile"), /--platform=linux/);
  // Nothing runs while building: no emulation is needed for another CPU.
  assert.ok(DOCKERFILE.stages.every((s) => s.steps.every((i) => i.op !== "RUN")));
  const copies = final.steps.filter((s) => s.op === "COPY");
  assert.equal(copies.length, 1, "copies one file");
  const user = final.steps.filter((s) => s.op === "USER").at(-1)?.args ?? "";
  assert.match(user, /^(65532|nonroot)(:(65532|nonroot))?$/, "runs as the nonroot user");
  assert.equal(final.steps.find((s) => s.op === "ENTRYPOINT")?.args, '["/login-etl"]');
  assert.equal(final.steps.find((s) => s.op === "CMD")?.args, '["run", "--listen", ":9464"]');
  assert.equal(final.steps.find((s) => s.op === "EXPOSE")?.args, "9464");
});

Deno.test("the Dockerfile copies the make build-all binary of each platform the release pushes", () => {
  const [release] = readYaml(".github/workflows/release.yml");
  const push = list(release, "jobs", "release", "steps").filter(isTree)
    .find((s) => String(s["uses"]).startsWith("docker/build-push-action@"));
  assert.ok(push !== undefined);
  const buildArgs = Object.fromEntries(
    String(at(push, "with", "build-args")).trim().split("\n").map((l) => l.trim().split("=")),
  );
  const platforms = String(at(push, "with", "platforms")).split(",").map((p) => p.trim());
  const targets = /^TARGETS := (.+)$/m.exec(readText("Makefile"))?.[1]?.trim().split(/\s+/) ?? [];
  const allowed = dockerignoreAllows();
  assert.ok(platforms.length >= 2);
  for (const platform of platforms) {
    const [os, arch = ""] = platform.split("/");
    assert.equal(os, "linux");
    const target = LINUX_TARGET_OF[arch];
    assert.ok(
      target !== undefined && targets.includes(target),
      `make build-all builds ${platform}`,
    );
    const file = binaryCopied(DOCKERFILE, { ...buildArgs, TARGETARCH: arch });
    assert.equal(file, `dist/login-etl-${target}`, platform);
    assert.ok(allowed.includes(file), `.dockerignore lets ${file} through`);
  }
});

Deno.test("the Dockerfile with SOURCE=local copies make build's dist/login-etl, as docker-compose builds it", () => {
  const [compose] = readYaml("docker-compose.yml");
  const source = String(at(compose, "services", "login-etl", "build", "args", "SOURCE"));
  assert.match(source, /^\$\{\w+:-local\}$/, "compose builds from make build by default");
  for (const arch of Object.keys(LINUX_TARGET_OF)) {
    assert.equal(binaryCopied(DOCKERFILE, { SOURCE: "local", TARGETARCH: arch }), "dist/login-etl");
  }
  assert.ok(dockerignoreAllows().includes("dist/login-etl"));
  // An architecture without a binary fails the build instead of copying a wrong one.
  assert.throws(() => binaryCopied(DOCKERFILE, { TARGETARCH: "riscv64" }), /no stage named/);
});

function dockerignoreAllows(): string[] {
  return readText(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l.startsWith("!")).map((l) => l.slice(1));
}

Deno.test(".dockerignore sends the builder only the compiled binaries", () => {
  const lines = readText(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  assert.equal(lines[0], "*", "ignores everything first");
  assert.ok(lines.includes("!dist/login-etl"));
  for (const line of lines.slice(1)) assert.match(line, /^!dist\/login-etl(-[\w-]+)?$/);
});
