/**
 * The one logger: lines on stderr, JSON when stderr is not a terminal, short
 * text when it is. JSON lines carry every field of every event; a text line
 * is what a person needs (an event's `brief`, else its message and fields),
 * cut to the terminal's width (folded there when a warning or an error). Callers pass ids, counts, codes and durations, never
 * bodies, `ip`/`device_id` values, keys or credentialed URLs; a setting
 * echoed as given (a queue URL, a connection string) still passes through
 * `redactSecrets` here, the last place every line goes through.
 *
 * @module
 */

import { redactSecrets } from "./errors.ts";
import { fit, fold } from "./ops/human.ts";

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

/**
 * What an event shows in the text format instead of its message and fields
 * (JSON lines are always the full record):
 * - `line`: the whole line, not cut (RunFailed's `error: ...`, which a
 *   person must read to the end and scripts match);
 * - `brief`: a short sentence after the time and level, or a few, each a
 *   line of its own (RunFinished's totals, then its rejects by reason);
 * - `hidden`: nothing, as the text format sums the event up elsewhere (a
 *   rejected batch on the progress line and in the closing line);
 * - `textOnly`: with `brief`, a line the JSON format leaves out because it
 *   lists the same facts event by event ("schema ready (5 migrations
 *   applied)" for the SchemaMigrated lines).
 */
export type TextForm =
  | { readonly line: string }
  | { readonly brief: string | readonly string[]; readonly textOnly?: boolean }
  | { readonly hidden: true };

/** Writes one event. */
export interface Logger {
  /** @param text the event's own text form, when it has one */
  log(level: Level, event: string, message: string, fields?: Fields, text?: TextForm): void;
}

/** How to build a logger. */
export interface LoggerOptions {
  readonly format: "auto" | "json" | "text";
  readonly level: Level;
  /** Where lines go; stderr by default. Tests pass a collector. */
  readonly write?: (line: string) => void;
  /** Whether the sink is a terminal, deciding `auto`; stderr's by default. */
  readonly isTerminal?: boolean;
  /**
   * The terminal's width, read at each line (it may be resized), or null
   * when lines are not cut: stderr's width when it is a terminal by default.
   */
  readonly columns?: () => number | null;
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

/**
 * Characters that must not reach a terminal or a line-based log as they are:
 * C0 controls (newline, carriage return, ESC…), DEL, C1 controls, the
 * Unicode line and paragraph separators, and the bidirectional overrides
 * and isolates that reorder what a terminal shows.
 */
// deno-lint-ignore no-control-regex -- matching control characters is its job
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const HAS_CONTROL = new RegExp(CONTROL.source);
const CONTROL_NAMES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * `text` with every control character written as an escape (`\n`,
 * `\x1b`, `\u2028`): the one rule for text that came from data (a
 * database, a message, a setting) on its way into a text log line or a
 * line of output, so it can neither start a forged line nor drive the
 * terminal.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    const named = CONTROL_NAMES[c];
    if (named !== undefined) return named;
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/**
 * `text` in double quotes, its quotes and backslashes escaped and its
 * control characters too (`escapeControl`): for a value read back from a
 * database, such as a key id, inside a message.
 */
export function quoteText(text: string): string {
  return `"${escapeControl(text.replace(/["\\]/g, (c) => `\\${c}`))}"`;
}

function textValue(value: FieldValue): string {
  if (typeof value === "string") {
    return /[\s"=\\]/.test(value) || HAS_CONTROL.test(value) ? quoteText(value) : value;
  }
  if (Array.isArray(value)) {
    const items = value.map(escapeControl);
    return items.length > 3
      ? `[${items.slice(0, 3).join(",")},…+${items.length - 3}]`
      : `[${items.join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${escapeControl(k)}:${v}`).join(",");
  }
  return String(value);
}

/** stderr's width, or null when it is not a terminal. */
function stderrColumns(): number | null {
  if (!Deno.stderr.isTerminal()) return null;
  try {
    return Deno.consoleSize().columns;
  } catch {
    return null;
  }
}

/** Creates a logger for the given format and level. */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write ?? writeStderr;
  const terminal = options.isTerminal ?? Deno.stderr.isTerminal();
  const json = options.format === "json" || (options.format === "auto" && !terminal);
  const threshold = RANK[options.level];
  const columns = options.columns ??
    (options.write === undefined ? stderrColumns : () => null);
  // Warnings and errors are folded, not cut: a person must read their fix
  // whole; rows after the first are indented past the time and level.
  const cut = (level: Level, line: string, indent: string) => {
    const width = columns();
    if (width === null) return line;
    return RANK[level] >= RANK.warn ? fold(line, width, indent).join("\n") : fit(line, width);
  };
  return {
    log(level, event, message, fields = {}, text) {
      if (RANK[level] < threshold) return;
      if (json) {
        if (text !== undefined && "textOnly" in text && text.textOnly === true) return;
        const record: Record<string, unknown> = {
          ts: new Date().toISOString(),
          level,
          event,
          msg: redactSecrets(message),
        };
        for (const [key, value] of Object.entries(fields)) {
          if (value !== undefined) {
            record[key] = typeof value === "string"
              ? redactSecrets(value)
              : Array.isArray(value)
              ? value.map((item) => typeof item === "string" ? redactSecrets(item) : item)
              : value;
          }
        }
        write(JSON.stringify(record));
        return;
      }
      if (text !== undefined && "hidden" in text) return;
      if (text !== undefined && "line" in text) {
        // Its newlines are the event's own (RunFailed puts a bug's stack
        // under its line); everything else in each line is escaped.
        write(redactSecrets(text.line.split("\n").map(escapeControl).join("\n")));
        return;
      }
      const prefix = `${new Date().toISOString().slice(11, 19)} ${level.toUpperCase().padEnd(5)}`;
      const bodies = text !== undefined && "brief" in text
        ? (typeof text.brief === "string" ? [text.brief] : text.brief).map(escapeControl)
        : [
          [
            escapeControl(message),
            ...Object.entries(fields)
              .filter(([, v]) => v !== undefined)
              .map(([k, v]) => `${k}=${textValue(v as FieldValue)}`),
          ].join(" "),
        ];
      // Cut after redaction: a secret cut short might no longer be recognised.
      const indent = " ".repeat(prefix.length + 1);
      write(
        bodies.map((body) => cut(level, redactSecrets(`${prefix} ${body}`), indent)).join("\n"),
      );
    },
  };
}

/** A logger that drops everything, for pure tests of code that logs. */
export const silentLogger: Logger = { log() {} };
