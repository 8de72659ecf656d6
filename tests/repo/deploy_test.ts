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

interface Instruction {
  readonly op: string;
  readonly args: string;
}

function dockerfile(): Instruction[] {
  return readText("Dockerfile")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const [op = "", ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(" ") };
    });
}

Deno.test("Dockerfile copies dist/login-etl into a distroless nonroot base", () => {
  const steps = dockerfile();
  const from = steps.filter((s) => s.op === "FROM");
  assert.equal(from.length, 1, "one stage");
  assert.match(
    from[0]?.args ?? "",
    /(^|\s)gcr\.io\/distroless\/cc-debian12:nonroot(@sha256:[0-9a-f]{64})?$/,
  );

  const args = new Map(
    steps.filter((s) => s.op === "ARG").map((s) => {
      const [name = "", value = ""] = s.args.split("=");
      return [name, value] as const;
    }),
  );
  const copies = steps.filter((s) => s.op === "COPY");
  assert.equal(copies.length, 1, "copies one file");
  const [source, destination] = (copies[0]?.args ?? "").split(/\s+/).filter((a) =>
    !a.startsWith("--")
  );
  const resolved = source?.replace(/^\$\{?(\w+)\}?$/, (_, name: string) => args.get(name) ?? "");
  assert.equal(resolved, "dist/login-etl");
  assert.equal(destination, "/login-etl");

  const user = steps.filter((s) => s.op === "USER").at(-1)?.args ?? "";
  assert.match(user, /^(65532|nonroot)(:(65532|nonroot))?$/, "runs as the nonroot user");
  assert.equal(steps.find((s) => s.op === "ENTRYPOINT")?.args, '["/login-etl"]');
  assert.equal(steps.find((s) => s.op === "CMD")?.args, '["run", "--listen", ":9464"]');
  assert.equal(steps.find((s) => s.op === "EXPOSE")?.args, "9464");
});

Deno.test(".dockerignore sends the builder only the compiled binary", () => {
  const lines = readText(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  assert.equal(lines[0], "*", "ignores everything first");
  assert.ok(lines.includes("!dist/login-etl"));
  for (const line of lines.slice(1)) assert.match(line, /^!dist\/login-etl(-[\w-]+)?$/);
});
