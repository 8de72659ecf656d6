/**
 * The one logger: lines on stderr, JSON when stderr is not a terminal, short
 * text when it is. Callers pass ids, counts, codes and durations, never
 * bodies, `ip`/`device_id` values, keys or credentialed URLs.
 *
 * @module
 */

/** Severity, least to most. */
export type Level = "debug" | "info" | "warn" | "error";

const RANK: Readonly<Record<Level, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A field value a log line may carry. */
export type FieldValue =
  | string
  | number
  | boolean
  | null
  | readonly string[]
  | Readonly<Record<string, number>>;

/** Named fields of one log line. */
export type Fields = Readonly<Record<string, FieldValue | undefined>>;

/** Writes one event. */
export interface Logger {
  log(level: Level, event: string, message: string, fields?: Fields): void;
}

/** How to build a logger. */
export interface LoggerOptions {
  readonly format: "auto" | "json" | "text";
  readonly level: Level;
  /** Where lines go; stderr by default. Tests pass a collector. */
  readonly write?: (line: string) => void;
  /** Whether the sink is a terminal, deciding `auto`; stderr's by default. */
  readonly isTerminal?: boolean;
}

const encoder = new TextEncoder();

/** Writes all of a line to stderr synchronously, so lines survive an immediate exit. */
function writeStderr(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
}

function textValue(value: FieldValue): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  if (Array.isArray(value)) {
    return value.length > 3
      ? `[${value.slice(0, 3).join(",")},…+${value.length - 3}]`
      : `[${value.join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}:${v}`).join(",");
  }
  return String(value);
}

/** Creates a logger for the given format and level. */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write ?? writeStderr;
  const terminal = options.isTerminal ?? Deno.stderr.isTerminal();
  const json = options.format === "json" || (options.format === "auto" && !terminal);
  const threshold = RANK[options.level];
  return {
    log(level, event, message, fields = {}) {
      if (RANK[level] < threshold) return;
      if (json) {
        const record: Record<string, unknown> = {
          ts: new Date().toISOString(),
          level,
          event,
          msg: message,
        };
        for (const [key, value] of Object.entries(fields)) {
          if (value !== undefined) record[key] = value;
        }
        write(JSON.stringify(record));
        return;
      }
      const time = new Date().toISOString().slice(11, 23);
      const extras = Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${textValue(v as FieldValue)}`);
      write([time, level.toUpperCase().padEnd(5), message, ...extras].join(" "));
    },
  };
}

/** A logger that drops everything, for pure tests of code that logs. */
export const silentLogger: Logger = { log() {} };
