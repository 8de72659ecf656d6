// The order contenders run in, round by round: pure, so that a test can
// hold it without starting the benches' services.

/**
 * The order of round `round`: it starts with contender `round` and walks the
 * list with another stride each round (1, -1, 3, -3, ..., each prime to the
 * list's length, so every contender comes once). Rotation alone let each
 * start a round but kept each one's predecessor: in `make bench` drain always
 * ran right after the stock loop, and drain with 64 loops after 32
 * (2026-12-07). With the strides a contender follows another one each round,
 * so what one run leaves behind (the emulator's garbage, a proxy's closing
 * sockets) is not always charged to the same successor. With four contenders
 * (bench.ts) only the strides 1 and -1 exist, so each has two predecessors;
 * a round walked backward ends with the next round's first contender, which
 * then runs twice in a row.
 */
export function roundOrder<T>(contenders: readonly T[], round: number): T[] {
  const n = contenders.length;
  const gcd = (a: number, b: number): number => b === 0 ? a : gcd(b, a % b);
  const coprimes = Array.from({ length: Math.max(n - 1, 1) }, (_, k) => k + 1)
    .filter((k) => gcd(k, n) === 1);
  const stride = coprimes[Math.floor(round / 2) % coprimes.length]! * (round % 2 === 1 ? -1 : 1);
  return contenders.map((_, i) => contenders[(((round + stride * i) % n) + n) % n]!);
}
