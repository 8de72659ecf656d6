/**
 * The commands, and what each one needs: the queue, a reject queue,
 * Postgres, the HMAC key, and which half of the vault key. This table is
 * the one statement of it. The settings table (`options.ts`) gives a command
 * the settings of what it needs, resolution (`resolve.ts`) reads exactly
 * those into its config, `check --for` checks them (`commands/check.ts`),
 * and `make docs` writes docs/configuration.md's "What each command needs"
 * from it (`needsTable`).
 *
 * @module
 */

/** The commands of the CLI. */
export type CommandName =
  | "drain"
  | "run"
  | "seed"
  | "demo"
  | "recover"
  | "forget"
  | "rekey"
  | "rekey-vault"
  | "vault-merge"
  | "keygen"
  | "migrate"
  | "check"
  | "report";

/** All command names, in the order `--help` lists them. */
export const COMMANDS: readonly CommandName[] = [
  "drain",
  "run",
  "seed",
  "demo",
  "recover",
  "forget",
  "rekey",
  "rekey-vault",
  "vault-merge",
  "keygen",
  "migrate",
  "check",
  "report",
];

/** One-line purpose of each command, for `--help`. */
export const COMMAND_SUMMARIES: Readonly<Record<CommandName, string>> = {
  drain: "Consume until the queue is empty, then exit",
  run: "Consume until SIGINT or SIGTERM, then finish in-flight work and exit",
  seed: "Send synthetic login events to the queue (creates it if missing)",
  demo: "Run everything embedded: an SQS emulator, Postgres, seed, drain, report",
  recover: "Print the raw value behind masks from the vault, for authorised people; audited",
  forget: "Erase the vault entries behind masks or values, and their linked masks; audited",
  rekey: "Move the masks of existing rows to another HMAC key id, via the vault; resumable",
  "rekey-vault": "Re-encrypt (or seal) vault entries under another vault key id; resumable",
  "vault-merge": "Merge the vault inbox into the vault, each entry proven first (owner role)",
  keygen: "Make a vault key pair: a private key set for recovery, a public one for consumers",
  migrate: "Apply the schema migrations this version needs (run it as the owner role)",
  check: "Preflight: the queue, Postgres, schema, privileges and keys a command needs",
  report: "What the database holds: sample rows, repeated masked values, rejects by reason",
};

/**
 * How a command needs the HMAC key:
 * - `required`: resolution refuses to start without one;
 * - `audited`: needed, but the command itself refuses without one, so that
 *   the refusal is audited (recover);
 * - `optional`: only part of the command uses it (forget: erasure by value);
 * - `none`: never read.
 */
export type HmacNeed = "required" | "audited" | "optional" | "none";

/**
 * Which half of the vault key a command needs:
 * - `public`: it writes the vault, and a key set's public half is enough
 *   (the private one is more than it needs); without a key the vault is off;
 * - `private`: it reads the vault, and needs a key that can open it;
 * - `none`: never read.
 */
export type VaultNeed = "public" | "private" | "none";

/** What one command needs. */
export interface Needs {
  /** The queue it reads or sends to (--queue-url, --region, --sqs-protocol). */
  readonly queue: boolean;
  /** A queue for raw copies of rejects (--reject-queue-url), optional. */
  readonly rejectQueue: boolean;
  /** Postgres (--database-url, the schemas, the owner role). */
  readonly database: boolean;
  readonly hmacKey: HmacNeed;
  /**
   * Every HMAC key recorded in use and not retired, not only the current one:
   * it merges, recovers or erases by value, and a value erased under a key it
   * lacks would go unseen (`db/keys.ts`'s `requireHmacKeys`).
   */
  readonly everyHmacKey: boolean;
  readonly vaultKey: VaultNeed;
}

const NOTHING = {
  queue: false,
  rejectQueue: false,
  database: false,
  hmacKey: "none",
  everyHmacKey: false,
  vaultKey: "none",
} as const satisfies Needs;
const CONSUMER = {
  queue: true,
  rejectQueue: true,
  database: true,
  hmacKey: "required",
  everyHmacKey: false,
  vaultKey: "public",
} as const satisfies Needs;

/**
 * The commands `check --for` can check: all but those that need nothing
 * outside themselves (demo embeds its services, keygen writes files) and
 * check itself.
 */
export type CheckTarget = Exclude<CommandName, "check" | "demo" | "keygen">;

/** What each command `check` can check needs. */
export const NEEDS = {
  drain: CONSUMER,
  run: CONSUMER,
  seed: { ...NOTHING, queue: true },
  recover: {
    ...NOTHING,
    database: true,
    hmacKey: "audited",
    everyHmacKey: true,
    vaultKey: "private",
  },
  forget: { ...NOTHING, database: true, hmacKey: "optional", everyHmacKey: true },
  rekey: {
    ...NOTHING,
    database: true,
    hmacKey: "required",
    everyHmacKey: true,
    vaultKey: "private",
  },
  "rekey-vault": { ...NOTHING, database: true, vaultKey: "private" },
  "vault-merge": {
    ...NOTHING,
    database: true,
    hmacKey: "required",
    everyHmacKey: true,
    vaultKey: "private",
  },
  migrate: { ...NOTHING, database: true },
  report: { ...NOTHING, database: true },
} as const satisfies Record<CheckTarget, Needs>;

/**
 * What each command has the settings of. `check` takes those of every
 * command it checks, each optional there (whether the checked command has
 * what it needs is what check reports); demo embeds its services and keygen
 * writes files, so neither has any.
 */
export const SETTINGS_NEEDS = {
  ...NEEDS,
  check: {
    queue: true,
    rejectQueue: true,
    database: true,
    hmacKey: "optional",
    everyHmacKey: false,
    vaultKey: "public",
  },
  demo: NOTHING,
  keygen: NOTHING,
} as const satisfies Record<CommandName, Needs>;

/** The commands `check --for` takes, in `--help`'s order. */
export const CHECK_TARGETS: readonly CheckTarget[] = COMMANDS.filter((c): c is CheckTarget =>
  Object.hasOwn(NEEDS, c)
);

/** The commands that have the settings of `need`, in `--help`'s order (for the settings table). */
export function commandsNeeding(need: (n: Needs) => boolean): CommandName[] {
  return COMMANDS.filter((c) => need(SETTINGS_NEEDS[c]));
}

const HMAC_TEXT: Readonly<Record<HmacNeed, string>> = {
  required: "required",
  audited: "required (a recover without it is refused and audited)",
  optional: "for erasure by value",
  none: "",
};
const VAULT_TEXT: Readonly<Record<VaultNeed, string>> = {
  public: "public half (vault.public.json); off when unset",
  private: "private half (vault.json): it reads the vault",
  none: "",
};

/** The markdown table of what each command needs, for docs/configuration.md (`make docs`). */
export function needsTable(): string {
  const yes = (b: boolean) => b ? "yes" : "";
  const rows = [
    "| Command | Queue | Reject queue | Postgres | HMAC key | Vault key |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const command of CHECK_TARGETS) {
    const n: Needs = NEEDS[command];
    const hmac = `${HMAC_TEXT[n.hmacKey]}${n.everyHmacKey ? "; every key in use" : ""}`;
    const cells = [
      command,
      yes(n.queue),
      n.rejectQueue ? "optional" : "",
      yes(n.database),
      hmac,
      VAULT_TEXT[n.vaultKey],
    ];
    rows.push(`| ${cells.join(" | ")} |`);
  }
  return rows.join("\n");
}
