/**
 * Numbers, times and widths as a person reads them on a terminal: counts
 * grouped (`12,340`), times rounded with a unit (`2.5 s`), text cut to the
 * terminal's width. The one home of these rules for the text log format,
 * the progress line and the report; JSON keeps the raw numbers. Pure.
 *
 * @module
 */

/** `12345` → `12,345`: fixed separators, so a line reads the same under any locale. */
export function grouped(n: number): string {
  const digits = String(Math.max(0, Math.round(n)));
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * A duration in milliseconds with a unit, to the precision a person uses:
 * `420 ms`, `2.5 s`, `37 s`, `4 min 10 s`.
 */
export function duration(ms: number): string {
  const t = Math.max(0, ms);
  if (t < 1000) return `${Math.round(t)} ms`;
  if (t < 10_000) return `${(Math.round(t / 100) / 10).toFixed(1)} s`;
  const s = Math.round(t / 1000);
  if (s < 120) return `${s} s`;
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** `n` followed by `noun`, with an `s` when n is not 1: `1 migration`, `5 migrations`. */
export function counted(n: number, noun: string): string {
  return `${grouped(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * `text` cut to `width` code points, the last one an ellipsis when cut, so
 * a line never wraps on a terminal that wide (a wrapped line also defeats
 * the `\r` of the progress line). Counts code points: the text log's lines
 * are escaped (`escapeControl`) and nearly all one column per character.
 */
export function fit(text: string, width: number): string {
  const chars = Array.from(text);
  if (chars.length <= width) return text;
  return `${chars.slice(0, Math.max(0, width - 1)).join("")}…`;
}

/**
 * `text` folded at spaces into rows of at most `width` code points, rows
 * after the first after `indent`; a word longer than a row is broken. For
 * what must be read whole (a warning's fix) where `fit` would cut it.
 */
export function fold(text: string, width: number, indent = ""): string[] {
  const room = Math.max(1, width - Array.from(indent).length);
  const rows: string[] = [];
  let row: string[] = [];
  const flush = () => {
    rows.push((rows.length === 0 ? "" : indent) + row.join(""));
    row = [];
  };
  for (const word of text.split(" ")) {
    const chars = Array.from(word);
    const limit = () => rows.length === 0 ? width : room;
    if (row.length > 0 && row.length + 1 + chars.length > limit()) flush();
    if (row.length > 0) row.push(" ");
    for (const ch of chars) {
      if (row.length >= limit()) flush();
      row.push(ch);
    }
  }
  flush();
  return rows;
}

/**
 * `text` shortened in the middle when longer than `head + tail + 1`
 * characters: `qDHqv3…jh34`. The ends are what a person compares two
 * values by; the whole value stays in the database and in JSON output.
 */
export function middle(text: string, head: number, tail: number): string {
  const chars = Array.from(text);
  if (chars.length <= head + tail + 1) return text;
  return `${chars.slice(0, head).join("")}…${chars.slice(chars.length - tail).join("")}`;
}

/**
 * `items` joined with `, ` into lines of at most `width` characters, each
 * after `indent`; an item longer than a line gets a line of its own.
 */
export function wrapList(items: readonly string[], width: number, indent = ""): string[] {
  const lines: string[] = [];
  let line = "";
  for (const [i, item] of items.entries()) {
    const piece = i < items.length - 1 ? `${item},` : item;
    if (line !== "" && indent.length + line.length + 1 + piece.length > width) {
      lines.push(indent + line);
      line = piece;
    } else {
      line = line === "" ? piece : `${line} ${piece}`;
    }
  }
  if (line !== "") lines.push(indent + line);
  return lines;
}
