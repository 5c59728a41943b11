// Splits a group commit's charges into rounds with at most one charge per account (channel or credit
// account), so one accept statement never sees an account twice; an account's charges apply in input
// order, one round per position.

/**
 * Outcomes in input order: `refuse` answers a charge refused before any statement (or undefined),
 * `acceptDistinct` runs one statement over charges on distinct accounts.
 */
export async function acceptInRounds<C, O>(
  charges: C[],
  accountOf: (charge: C) => string,
  refuse: (charge: C) => O | undefined,
  acceptDistinct: (charges: C[]) => Promise<O[]>,
): Promise<O[]> {
  const outcomes: O[] = new Array(charges.length);
  const rounds: number[][] = [];
  const seen = new Map<string, number>();
  charges.forEach((charge, index) => {
    const refused = refuse(charge);
    if (refused !== undefined) {
      outcomes[index] = refused;
      return;
    }
    const account = accountOf(charge);
    const round = seen.get(account) ?? 0;
    seen.set(account, round + 1);
    (rounds[round] ??= []).push(index);
  });
  for (const round of rounds) {
    const results = await acceptDistinct(round.map((i) => charges[i]!));
    round.forEach((index, k) => (outcomes[index] = results[k]!));
  }
  return outcomes;
}
