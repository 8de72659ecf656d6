// Bounded runs and dry runs through the CLI on local-aws-sqs: the cases of
// tests/helpers/bounded.ts (fauxqs: bounded_test.ts).

import { boundedTests } from "../helpers/bounded.ts";

boundedTests("local-aws-sqs");
