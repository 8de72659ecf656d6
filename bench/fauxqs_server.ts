// The benchmark's SQS endpoint: fauxqs in a process of its own, so its CPU is
// not counted against the consumer. Prints its port on stdout, then serves
// until killed.

import { startFauxqs } from "fauxqs";

const server = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1" });
// deno-lint-ignore no-console
console.log(server.port);
