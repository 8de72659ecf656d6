// PromQL as the tests need it: syntax errors and the metric names an
// expression reads, from Prometheus' own grammar (@prometheus-io/lezer-promql,
// the parser of Prometheus' web UI), after Grafana's variables are replaced.

import { parser } from "@prometheus-io/lezer-promql";

/**
 * Replaces Grafana's dashboard variables with values PromQL accepts:
 * `$__rate_interval` and the other intervals with `5m`, any other `$name` or
 * `${name}` with `login-etl` (they stand in label values).
 */
export function fromGrafana(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b/g, "5m")
    .replace(/\$\{\w+\}|\$\w+/g, "login-etl");
}

/** The offsets of syntax errors in `expr`; empty when it parses. */
export function syntaxErrors(expr: string): number[] {
  const errors: number[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
    },
  });
  return errors;
}

/** The metric names `expr` selects, in order of appearance, each once. */
export function metricNames(expr: string): string[] {
  const names: string[] = [];
  const tree = parser.parse(expr);
  tree.iterate({
    enter(node) {
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        names.push(expr.slice(node.from, node.to));
      }
      // {__name__="metric"} selects by name too.
      if (node.name === "UnquotedLabelMatcher" || node.name === "LabelMatcher") {
        const text = expr.slice(node.from, node.to);
        const match = /^__name__\s*=\s*"([^"]+)"$/.exec(text);
        if (match?.[1] !== undefined) names.push(match[1]);
      }
    },
  });
  return [...new Set(names)];
}
