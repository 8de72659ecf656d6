/**
 * Reads a JSON array of login events (plain or gzip) into message bodies, as
 * the exercise's sample file is laid out.
 *
 * @module
 */

import { ConfigError, whyUnreadable } from "../errors.ts";

/**
 * Loads `path` (`.json` or `.json.gz`) and returns one body per array element.
 *
 * @throws {ConfigError} when the file is unreadable or not a JSON array
 */
export async function loadSampleBodies(path: string): Promise<string[]> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read --sample "${path}": ${whyUnreadable(error)}`, {
      cause: error,
    });
  }
  let text: string;
  try {
    const gzip = bytes[0] === 0x1f && bytes[1] === 0x8b;
    const stream = new Blob([bytes]).stream();
    text = await new Response(gzip ? stream.pipeThrough(new DecompressionStream("gzip")) : stream)
      .text();
  } catch (error) {
    throw new ConfigError(`Cannot read --sample "${path}": not valid gzip`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`Cannot use --sample "${path}": not valid JSON`, { cause: error });
  }
  if (!Array.isArray(parsed)) {
    throw new ConfigError(`Cannot use --sample "${path}": must be a JSON array of login events`);
  }
  return parsed.map((event) => JSON.stringify(event));
}
