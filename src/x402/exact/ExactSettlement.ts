// Settles x402 `exact` payments: `paychan work` hands each served payment's transferWithAuthorization
// to the outbox (src/ledger/txStore.ts) in the transaction that marks it SUBMITTED, so the one
// TxManager that owns the settlement key's nonces sends it with the claims, and no second sender
// ever signs with that key. The TxManager reports back when the transfer is final (the token's
// Transfer to the payee in the receipt: revenue in the payee's wallet) or will never happen.
import { isAddressEqual, parseEventLogs, type Hex, type TransactionReceipt } from "viem";
import type { FailedTx, FinalTx, TxManager } from "../../chain/TxManager.js";
import type { PrismaClient } from "../../generated/prisma/client.js";
import {
  recordExactFailed,
  recordExactSettled,
  submitDueExactPayments,
  submittedExactPayment,
  type DueExactPayment,
  type ExactScope,
} from "../../ledger/exactPayments.js";
import type { Tx } from "../../ledger/postings.js";
import { longTransaction } from "../../ledger/transactions.js";
import { transferWithAuthorizationData } from "./Eip3009Token.js";
import { eip3009Abi } from "./eip3009.js";

const PURPOSE = "exact:";

export type ExactSettlementOptions = {
  prisma: PrismaClient;
  txManager: Pick<TxManager, "enqueue">;
  scope: ExactScope;
  /** A payment still ACCEPTED this long after it was (its gateway did not live to say how the handler
   * answered) is submitted anyway, while its authorization is valid (default 60). */
  orphanAfterSeconds?: number;
};

export class ExactSettlement {
  constructor(private readonly options: ExactSettlementOptions) {}

  /** Hands every payment due to the outbox; the TxManager's next pass sends them. */
  async submitDue(): Promise<{ submitted: number; expired: number }> {
    const { prisma, txManager, scope } = this.options;
    return longTransaction(prisma, (tx) =>
      submitDueExactPayments(tx, scope, this.options.orphanAfterSeconds ?? 60, (payment) =>
        txManager.enqueue(tx, { to: scope.token, data: calldataOf(payment), purpose: `${PURPOSE}${payment.id}` }),
      ),
    );
  }

  /** The TxManager's onFinal for exact transfers: undefined for any other transaction. */
  async onFinal(tx: Tx, { chainTxId, purpose, receipt }: FinalTx): Promise<string | undefined> {
    if (!purpose.startsWith(PURPOSE)) return undefined;
    const payment = await submittedExactPayment(tx, chainTxId);
    if (!payment) return undefined;
    const transfer = receipt.status === "success" ? this.transferIn(receipt, payment) : undefined;
    if (transfer) {
      await recordExactSettled(tx, payment, { txHash: receipt.transactionHash, logIndex: transfer });
      return `exact payment ${payment.id}: ${payment.value} from ${payment.payer} settled`;
    }
    const reason =
      receipt.status === "success"
        ? "the transaction succeeded without transferring the amount to the payee"
        : "the transfer reverted: the payer moved the tokens or used the authorization's nonce first, or it expired";
    await recordExactFailed(tx, payment, reason, receipt.transactionHash);
    return `exact payment ${payment.id} unpaid: ${reason}`;
  }

  /** The TxManager's onFailed for exact transfers: the transfer will not happen. */
  async onFailed(tx: Tx, { chainTxId, purpose, reason }: FailedTx): Promise<void> {
    if (!purpose.startsWith(PURPOSE)) return;
    const payment = await submittedExactPayment(tx, chainTxId);
    if (payment) await recordExactFailed(tx, payment, `the transfer was not sent: ${reason}`);
  }

  /** The log index of the token's Transfer of exactly this payment, if the receipt has it. */
  private transferIn(receipt: TransactionReceipt, payment: DueExactPayment): number | undefined {
    const token = this.options.scope.token;
    const logs = parseEventLogs({ abi: eip3009Abi, eventName: "Transfer", logs: receipt.logs.filter((l) => isAddressEqual(l.address, token)) });
    return logs.find(
      (l) => isAddressEqual(l.args.from, payment.payer) && isAddressEqual(l.args.to, payment.payee) && l.args.value === payment.value,
    )?.logIndex;
  }
}

function calldataOf(payment: DueExactPayment): Hex {
  const { payer: from, payee: to, value, validAfter, validBefore, nonce, signature } = payment;
  return transferWithAuthorizationData({ from, to, value, validAfter, validBefore, nonce }, signature);
}
