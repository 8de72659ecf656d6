// An SQS endpoint for scripts/binary_smoke.sh: local-aws-sqs (a third-party
// emulator speaking JSON and Query) on a free loopback port with LocalStack's
// account id. Prints its endpoint on stdout, then serves until killed.

import { createSqsServer } from "local-aws-sqs";

const server = await createSqsServer({ port: 0, hostname: "127.0.0.1", accountId: "000000000000" });
const address = server.address();
if (address === null || typeof address === "string") throw new Error("no port");
// deno-lint-ignore no-console
console.log(`http://127.0.0.1:${address.port}`);
