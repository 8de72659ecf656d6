/**
 * The one logger: lines on stderr, JSON when stderr is not a terminal, short
 * text when it is. Callers pass ids, counts, codes and durations, never
 * bodies, `ip`/`device_id` values, keys or credentialed URLs; a setting
 * echoed as given (a queue URL, a connection string) still passes through
 * `redactSecrets` here, the last place every line goes through.
 *
 * @module
 */

import { redactSecrets } from "./errors.ts";

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
  /**
   * @param textLine the whole line in text format, instead of the time,
   *   level, message and fields (JSON lines are always the full record)
   */
  log(level: Level, event: string, message: string, fields?: Fields, textLine?: string): void;
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

/**
 * Writes all of `text` synchronously, so lines survive an immediate exit
 * (a pipe may take a write in parts).
 */
export function writeAllSync(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

function writeStderrText(text: string): void {
  writeAllSync(Deno.stderr, text);
}

/**
 * One line kept at the bottom of a terminal and rewritten in place with `\r`
 * (drain's progress). Log lines go through `writeLine`, which erases the
 * status, writes the line and redraws the status in one write, so the two
 * never interleave. Erasing pads with spaces rather than using ANSI erase
 * codes, so it works on any terminal; callers keep the text narrower than
 * the terminal, since `\r` cannot return across a wrapped line.
 */
export class StatusLine {
  readonly #write: (text: string) => void;
  #shown = "";

  /** @param write receives raw text, `\r` and newlines included */
  constructor(write: (text: string) => void) {
    this.#write = write;
  }

  /** Replaces the status with `text` (one line, no newline). */
  show(text: string): void {
    const pad = Math.max(0, this.#shown.length - text.length);
    this.#write(`\r${text}${" ".repeat(pad)}${pad > 0 ? `\r${text}` : ""}`);
    this.#shown = text;
  }

  /** Erases the status, leaving the cursor at the start of its line. */
  clear(): void {
    if (this.#shown === "") return;
    this.#write(`\r${" ".repeat(this.#shown.length)}\r`);
    this.#shown = "";
  }

  /** Writes `line` and a newline above the status. */
  writeLine(line: string): void {
    if (this.#shown === "") {
      this.#write(line + "\n");
      return;
    }
    const blank = " ".repeat(Math.max(0, this.#shown.length - line.length));
    this.#write(`\r${line}${blank}\n${this.#shown}`);
  }
}

/** The status line of this process's stderr; the default logger writes through it. */
export const stderrStatus: StatusLine = new StatusLine(writeStderrText);

/** Writes one line to stderr above the status line, if one is shown. */
export function writeStderr(line: string): void {
  stderrStatus.writeLine(line);
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
    log(level, event, message, fields = {}, textLine) {
      if (RANK[level] < threshold) return;
      if (json) {
        const record: Record<string, unknown> = {
          ts: new Date().toISOString(),
          level,
          event,
          msg: redactSecrets(message),
        };
        for (const [key, value] of Object.entries(fields)) {
          if (value !== undefined) {
            record[key] = typeof value === "string" ? redactSecrets(value) : value;
          }
        }
        write(JSON.stringify(record));
        return;
      }
      if (textLine !== undefined) {
        write(redactSecrets(textLine));
        return;
      }
      const time = new Date().toISOString().slice(11, 23);
      const extras = Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${textValue(v as FieldValue)}`);
      write(redactSecrets([time, level.toUpperCase().padEnd(5), message, ...extras].join(" ")));
    },
  };
}

/** A logger that drops everything, for pure tests of code that logs. */
export const silentLogger: Logger = { log() {} };
