// What a person sees: runs a command under a real pseudo-terminal of a given
// width (util-linux `script`), and replays what it wrote as a terminal
// would, `\r`, erases and line wrapping included (tests/cli/screen_test.ts).

import { baseEnv } from "./cli.ts";

const root = new URL("../../", import.meta.url).pathname;

/** A command's run on a terminal. */
export interface TerminalRun {
  readonly code: number;
  /** Everything written to the terminal, as bytes decoded. */
  readonly raw: string;
}

/** `arg` quoted for sh. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * Runs `argv` in this checkout on a pseudo-terminal `columns` wide, with
 * stdin, stdout and stderr all on it, as a person's shell would; `env`
 * over the clean environment the CLI tests start from.
 */
export async function runOnTerminal(
  argv: readonly string[],
  options: { readonly columns: number; readonly env?: Record<string, string> },
): Promise<TerminalRun> {
  const inner = `stty cols ${options.columns} rows 60; ${argv.map(shellQuote).join(" ")}`;
  const output = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", inner, "/dev/null"],
    cwd: root,
    clearEnv: true,
    env: { ...baseEnv(), TERM: "xterm", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, raw: new TextDecoder().decode(output.stdout) };
}

/** The screen a terminal shows after `raw`: its rows, and each row it had to wrap. */
export interface Screen {
  /** Every row written, top to bottom (the scrollback included), trailing blanks trimmed. */
  readonly rows: readonly string[];
  /** Rows whose text ran past the last column and went on in the next row. */
  readonly wrapped: readonly string[];
}

/**
 * Replays `raw` as a terminal `columns` wide: printable characters at the
 * cursor, `\r` to the first column, `\n` to the next row, a character past
 * the last column to the start of the next row (a wrap). CSI sequences
 * that erase (`K`, `J`) erase as a terminal does, `G` moves to a column; the
 * rest (colours) change nothing that is read here.
 */
export function replay(raw: string, columns: number): Screen {
  const rows: string[][] = [[]];
  const wrapped: string[] = [];
  let row = 0;
  let col = 0;
  const current = () => (rows[row] ??= []);
  const chars = Array.from(raw);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as string;
    if (c === "\r") col = 0;
    else if (c === "\n") {
      row++;
      current();
    } else if (c === "\u001b") {
      // CSI: ESC [ params final-byte; other escapes are two characters.
      if (chars[i + 1] !== "[") {
        i++;
        continue;
      }
      let j = i + 2;
      let params = "";
      while (j < chars.length && !/[@-~]/.test(chars[j] as string)) params += chars[j++];
      const final = chars[j];
      i = j;
      const line = current();
      if (final === "K" && params === "2") line.length = 0;
      else if (final === "K" && params === "1") line.fill(" ", 0, col + 1);
      else if (final === "K") line.length = Math.min(line.length, col);
      else if (final === "J") {
        line.length = Math.min(line.length, col);
        rows.length = row + 1;
      } else if (final === "G") col = Math.max(0, Number(params || "1") - 1);
    } else if (c === "\b") col = Math.max(0, col - 1);
    else if (c >= " ") {
      if (col >= columns) {
        wrapped.push(current().join(""));
        row++;
        col = 0;
      }
      const line = current();
      while (line.length < col) line.push(" ");
      line[col++] = c;
    }
  }
  const text = rows.map((r) => r.join("").trimEnd());
  while (text.length > 0 && text[text.length - 1] === "") text.pop();
  return { rows: text, wrapped };
}
