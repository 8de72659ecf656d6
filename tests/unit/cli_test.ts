// Unit tests of src/cli.ts: parseInvocation() results and usage errors, and helpText() per command.
import assert from "node:assert/strict";
import { helpText, type Invocation, parseInvocation } from "../../src/cli.ts";
import { COMMANDS } from "../../src/config/commands.ts";
import { OPTIONS, optionsFor } from "../../src/config/options.ts";
import { UsageError } from "../../src/errors.ts";

/** The UsageError parseInvocation throws for `argv`. */
function usageError(argv: readonly string[]): UsageError {
  try {
    parseInvocation(argv);
  } catch (error) {
    assert.ok(error instanceof UsageError, `expected UsageError, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected parseInvocation(${JSON.stringify(argv)}) to throw a UsageError`);
}

const ERROR_CASES: readonly { name: string; argv: string[]; message: string }[] = [
  {
    name: "refuses an unknown command",
    argv: ["frobnicate"],
    message: `Unknown command "frobnicate": commands: ${COMMANDS.join(", ")}; see login-etl --help`,
  },
  {
    name: "refuses a flag before the command",
    argv: ["--batch-size", "3", "drain"],
    message: 'Unknown command "--batch-size": put the command first; see login-etl --help',
  },
  {
    name: "suggests --version for a misspelt --version",
    argv: ["--verison"],
    message: 'Unknown command "--verison": did you mean --version? See login-etl --help',
  },
  {
    name: "suggests --help for a misspelt --help",
    argv: ["--hlep"],
    message: 'Unknown command "--hlep": did you mean --help? See login-etl --help',
  },
  {
    name: "refuses an unknown long flag",
    argv: ["drain", "--nope"],
    message: "Unknown flag --nope for drain; see login-etl drain --help",
  },
  {
    name: "refuses an unknown short flag",
    argv: ["run", "-x"],
    message: "Unknown flag -x for run; see login-etl run --help",
  },
  {
    name: "refuses a flag of another command, naming the commands that take it",
    argv: ["seed", "--database-url", "postgres://h/d"],
    message:
      "Unknown flag --database-url for seed: only drain, run, recover, forget, rekey, rekey-vault, vault-merge, migrate, check and report take --database-url; see login-etl seed --help",
  },
  {
    name: "refuses another command's flag spelt another way, naming it",
    argv: ["drain", "--for", "run", "--LISTEN", ":9464"],
    message: "Unknown flag --for for drain: only check take --for; see login-etl drain --help",
  },
  {
    name: "refuses --version after a command",
    argv: ["drain", "--version"],
    message: "Unknown flag --version for drain; see login-etl drain --help",
  },
  {
    name: "refuses a flag without its value at the end",
    argv: ["drain", "--batch-size"],
    message: "Flag --batch-size needs a value; see login-etl drain --help",
  },
  {
    name: "refuses a flag without its value before another flag",
    argv: ["drain", "--batch-size", "--dry-run"],
    message: "Flag --batch-size needs a value; see login-etl drain --help",
  },
  {
    name: "refuses a seed flag without its value",
    argv: ["seed", "--count"],
    message: "Flag --count needs a value; see login-etl seed --help",
  },
  {
    name: "refuses a value for a boolean flag",
    argv: ["drain", "--dry-run=yes"],
    message: "Flag --dry-run takes no value; see login-etl drain --help",
  },
  {
    name: "refuses a positional argument",
    argv: ["drain", "extra"],
    message:
      'Unexpected argument "extra" for drain: it takes only flags; see login-etl drain --help',
  },
  {
    name: "refuses a connection string as an argument without echoing its password",
    argv: ["migrate", "postgres://app:Hunter2Secret@db/prod"],
    message:
      "Unexpected argument 2 for migrate (not shown: it may hold a secret): it takes only flags; quote a value that has spaces; see login-etl migrate --help",
  },
  {
    name: "refuses a malformed connection string (a / in the password) without echoing it",
    argv: ["migrate", "--dry-run", "postgres://app:12/Hunter2Secret@db/prod"],
    message:
      "Unexpected argument 3 for migrate (not shown: it may hold a secret): it takes only flags; quote a value that has spaces; see login-etl migrate --help",
  },
  {
    name: "refuses a connection string in the command's place without echoing it",
    argv: ["host=db password=Hunter2Secret", "migrate"],
    message:
      `Unknown command (argument 1, not shown: it may hold a secret): put the command first, settings after it; commands: ${
        COMMANDS.join(", ")
      }; see login-etl --help`,
  },
  {
    name: "refuses a positional argument after --",
    argv: ["seed", "--", "more"],
    message: 'Unexpected argument "more" for seed: it takes only flags; see login-etl seed --help',
  },
  {
    name: "refuses a positional argument between flags",
    argv: ["run", "--batch-size", "3", "oops", "--dry-run"],
    message:
      'Unexpected argument "oops" for run: it takes only flags; quote the value of --batch-size if this word belongs to it; see login-etl run --help',
  },
  {
    name: "does not echo a word of a keyword/value string the shell split, and names its flag",
    argv: ["check", "--database-url", "host=127.0.0.1", "password=Hunter2Secret", "sslmode=x"],
    message:
      "Unexpected argument 4 for check (not shown: it may hold a secret): it takes only flags; quote the value of --database-url if this word belongs to it; see login-etl check --help",
  },
  {
    name: "does not echo the tail of a split URL, after --flag=value",
    argv: ["drain", "--database-url=postgres://u:Hunter2", "Secret@db/prod"],
    message:
      "Unexpected argument 3 for drain (not shown: it may hold a secret): it takes only flags; quote the value of --database-url if this word belongs to it; see login-etl drain --help",
  },
  {
    name: "does not echo a long word, a key perhaps",
    argv: ["seed", "q8Jv3kZ0aTq1YbW5pL7sN2xR4mC6dE9fH0gI1jK2lM3"],
    message:
      "Unexpected argument 2 for seed (not shown: it may hold a secret): it takes only flags; quote a value that has spaces; see login-etl seed --help",
  },
  {
    name: "does not echo a connection string given in the command's place",
    argv: ["postgres://app:Hunter2Secret@db/prod", "migrate"],
    message:
      `Unknown command (argument 1, not shown: it may hold a secret): put the command first, settings after it; commands: ${
        COMMANDS.join(", ")
      }; see login-etl --help`,
  },
  {
    name: "does not echo a flag with its value given before the command",
    argv: ["--database-url=host=db password=Hunter2Secret", "migrate"],
    message:
      `Unknown command (argument 1, not shown: it may hold a secret): put the command first, settings after it; commands: ${
        COMMANDS.join(", ")
      }; see login-etl --help`,
  },
];

Deno.test("parseInvocation() throws a one-line UsageError for each bad command line", async (t) => {
  for (const c of ERROR_CASES) {
    await t.step(`parseInvocation() ${c.name}`, () => {
      const error = usageError(c.argv);
      assert.equal(error.message, c.message);
      assert.ok(!error.message.includes("\n"));
      assert.equal(error.code, "usage");
      assert.equal(error.exitCode, 2);
    });
  }
});

const OK_CASES: readonly { name: string; argv: string[]; expected: Invocation }[] = [
  {
    name: "reports a missing command for no arguments",
    argv: [],
    expected: { kind: "missing" },
  },
  {
    name: "shows the overview for --help",
    argv: ["--help"],
    expected: { kind: "help", command: null },
  },
  { name: "shows the overview for -h", argv: ["-h"], expected: { kind: "help", command: null } },
  {
    name: "shows the overview for help",
    argv: ["help"],
    expected: { kind: "help", command: null },
  },
  {
    name: "shows a command's help for help <command>",
    argv: ["help", "seed"],
    expected: { kind: "help", command: "seed" },
  },
  { name: "reads --version", argv: ["--version"], expected: { kind: "version", verbose: false } },
  {
    name: "reads --version --verbose",
    argv: ["--version", "--verbose"],
    expected: { kind: "version", verbose: true },
  },
  { name: "reads -V", argv: ["-V"], expected: { kind: "version", verbose: false } },
  ...COMMANDS.flatMap((command) => [
    {
      name: `shows ${command}'s help for ${command} --help`,
      argv: [command, "--help"],
      expected: { kind: "help", command } as const,
    },
    {
      name: `shows ${command}'s help for ${command} -h`,
      argv: [command, "-h"],
      expected: { kind: "help", command } as const,
    },
    {
      name: `shows ${command}'s help when --help follows other flags`,
      argv: [command, "--verbose", "--help"],
      expected: { kind: "help", command } as const,
    },
    {
      name: `reads ${command} with no flags`,
      argv: [command],
      expected: { kind: "command", command, flags: {} } as const,
    },
  ]),
  {
    name: "reads string and boolean flags",
    argv: ["drain", "--batch-size", "3", "--dry-run", "--queue-url=http://h/0/q"],
    expected: {
      kind: "command",
      command: "drain",
      flags: { "batch-size": "3", "dry-run": true, "queue-url": "http://h/0/q" },
    },
  },
  {
    name: "keeps a value that starts with a dash when written with =",
    argv: ["seed", "--count=-1"],
    expected: { kind: "command", command: "seed", flags: { count: "-1" } },
  },
];

/** Misspellings and what parseInvocation's message suggests for each (null: nothing). */
const NEAREST_CASES: readonly {
  readonly argv: readonly string[];
  readonly message: string;
}[] = [
  {
    argv: ["drian"],
    message: 'Unknown command "drian": did you mean drain? See login-etl --help',
  },
  { argv: ["rnu"], message: 'Unknown command "rnu": did you mean run? See login-etl --help' },
  {
    argv: ["rekey_vault"],
    message: 'Unknown command "rekey_vault": did you mean rekey-vault? See login-etl --help',
  },
  {
    argv: ["Migrate"],
    message: 'Unknown command "Migrate": did you mean migrate? See login-etl --help',
  },
  {
    argv: ["reprot", "--summary-json"],
    message: 'Unknown command "reprot": did you mean report? See login-etl --help',
  },
  {
    argv: ["drain", "--max-row", "3"],
    message:
      "Unknown flag --max-row for drain: did you mean --max-rows? See login-etl drain --help",
  },
  {
    argv: ["drain", "--max-row=3"],
    message:
      "Unknown flag --max-row for drain: did you mean --max-rows? See login-etl drain --help",
  },
  {
    argv: ["drain", "--max_rows", "3"],
    message:
      "Unknown flag --max_rows for drain: did you mean --max-rows? See login-etl drain --help",
  },
  {
    argv: ["drain", "--maxRows", "3"],
    message:
      "Unknown flag --maxRows for drain: did you mean --max-rows? See login-etl drain --help",
  },
  {
    argv: ["run", "--dry-rn"],
    message: "Unknown flag --dry-rn for run: did you mean --dry-run? See login-etl run --help",
  },
  {
    argv: ["seed", "--cuont", "5"],
    message: "Unknown flag --cuont for seed: did you mean --count? See login-etl seed --help",
  },
  {
    argv: ["report", "--databse-url", "postgres://h/d"],
    message:
      "Unknown flag --databse-url for report: did you mean --database-url? See login-etl report --help",
  },
  {
    argv: ["run", "--listne", ":9464"],
    message: "Unknown flag --listne for run: did you mean --listen? See login-etl run --help",
  },
  // Too far from anything: the plain message.
  {
    argv: ["frobnicate"],
    message: `Unknown command "frobnicate": commands: ${COMMANDS.join(", ")}; see login-etl --help`,
  },
  {
    argv: ["dr"],
    message: `Unknown command "dr": commands: ${COMMANDS.join(", ")}; see login-etl --help`,
  },
  {
    argv: ["drain", "--bogus"],
    message: "Unknown flag --bogus for drain; see login-etl drain --help",
  },
  { argv: ["drain", "--x"], message: "Unknown flag --x for drain; see login-etl drain --help" },
  { argv: ["run", "-x"], message: "Unknown flag -x for run; see login-etl run --help" },
  {
    argv: ["drain", "--version"],
    message: "Unknown flag --version for drain; see login-etl drain --help",
  },
];

Deno.test("parseInvocation() suggests the nearest command or flag, only when close enough", async (t) => {
  for (const c of NEAREST_CASES) {
    await t.step(`parseInvocation() for ${c.argv.join(" ")}`, () => {
      const error = usageError(c.argv);
      assert.equal(error.message, c.message);
      assert.equal(error.exitCode, 2);
    });
  }
});

Deno.test("parseInvocation() reads each valid command line", async (t) => {
  for (const c of OK_CASES) {
    await t.step(`parseInvocation() ${c.name}`, () => {
      assert.deepEqual(parseInvocation(c.argv), c.expected);
    });
  }
});

Deno.test("parseInvocation() accepts every option helpText() lists for a command", async (t) => {
  for (const command of COMMANDS) {
    for (const spec of optionsFor(command)) {
      await t.step(`parseInvocation() accepts ${command} --${spec.flag}`, () => {
        const argv = spec.kind === "boolean"
          ? [command, `--${spec.flag}`]
          : [command, `--${spec.flag}`, "v"];
        const parsed = parseInvocation(argv);
        assert.equal(parsed.kind, "command");
        if (parsed.kind === "command") {
          assert.equal(parsed.flags[spec.flag], spec.kind === "boolean" ? true : "v");
        }
      });
    }
  }
});

Deno.test("helpText() lists every option of a command with its env var, and no other", async (t) => {
  for (const command of COMMANDS) {
    await t.step(`helpText() for ${command}`, () => {
      const text = helpText(command, "1.2.3");
      const lines = text.split("\n");
      assert.ok(lines[0]?.startsWith(`login-etl ${command}: `), lines[0]);
      for (const spec of optionsFor(command)) {
        const at = lines.findIndex((l) => new RegExp(`^\\s+--${spec.flag}(\\s|$)`).test(l));
        assert.ok(at >= 0, `--${spec.flag} missing from ${command} help`);
        // The flag's line and its wrapped continuations, as one text.
        let end = at + 1;
        while (end < lines.length && /^ {4,}\S/.test(lines[end] ?? "")) end++;
        const line = lines.slice(at, end).map((l) => l.trim()).join(" ");
        if (spec.env !== undefined) assert.ok(line.includes(spec.env), `${spec.env}: ${line}`);
        if (spec.default !== undefined) {
          assert.ok(line.includes(`default ${spec.default}`), `default of --${spec.flag}: ${line}`);
        }
      }
      for (const spec of OPTIONS.filter((o) => !o.commands.includes(command))) {
        assert.ok(
          !lines.some((l) => new RegExp(`^\\s+--${spec.flag}(\\s|$)`).test(l)),
          `--${spec.flag} should not be in ${command} help`,
        );
      }
      assert.ok(lines.some((l) => /^\s+--help\s/.test(l)));
    });
  }
});

Deno.test("helpText() overview lists every command and the version", () => {
  const text = helpText(null, "9.8.7");
  assert.match(text, /9\.8\.7/);
  for (const command of COMMANDS) {
    assert.ok(text.split("\n").some((l) => l.trimStart().startsWith(`${command} `)), command);
  }
});

Deno.test("helpText() lines fit in 100 columns for every command", () => {
  for (const command of [null, ...COMMANDS]) {
    for (const line of helpText(command, "9.9.9").split("\n")) {
      assert.ok(line.length <= 100, `${command ?? "overview"}: ${line.length} columns: ${line}`);
    }
  }
});

Deno.test("a command neither accepts nor shows a flag it does not use", () => {
  assert.throws(
    () => parseInvocation(["recover", "--concurrency", "4"]),
    /Unknown flag --concurrency for recover/,
  );
  assert.throws(
    () => parseInvocation(["forget", "--summary-json"]),
    /Unknown flag --summary-json for forget/,
  );
  assert.doesNotMatch(helpText("recover", "1"), /--concurrency|--summary-json|--batch-size/);
  assert.match(helpText("drain", "1"), /--concurrency/);
});

/** `word` with the letters at `i` and `i + 1` swapped. */
function swapped(word: string, i: number): string {
  return word.slice(0, i) + (word[i + 1] ?? "") + (word[i] ?? "") + word.slice(i + 2);
}

Deno.test("parseInvocation() suggests every command and flag from any swap of two neighbouring letters", async (t) => {
  for (const command of COMMANDS) {
    await t.step(`parseInvocation() suggests ${command} and its flags`, () => {
      for (let i = 0; i + 1 < command.length; i++) {
        const typo = swapped(command, i);
        if (typo === command) continue;
        assert.match(usageError([typo]).message, new RegExp(`did you mean ${command}\\? `), typo);
      }
      // A two-letter flag (--to) swapped shares no letter in place: too far to guess.
      for (const spec of optionsFor(command).filter((s) => s.flag.length > 2)) {
        for (let i = 0; i + 1 < spec.flag.length; i++) {
          const typo = swapped(spec.flag, i);
          if (typo === spec.flag) continue;
          const message = usageError([command, `--${typo}`, "1"]).message;
          assert.ok(message.includes(`did you mean --${spec.flag}? `), `${typo}: ${message}`);
        }
      }
    });
  }
});
