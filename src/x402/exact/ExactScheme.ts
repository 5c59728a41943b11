// x402's `exact` scheme beside paychan on the same routes: a one-off buyer with any stock x402 client
// pays a route's price with an EIP-3009 `transferWithAuthorization` it signs to the payee, without
// opening a channel. A PaymentScheme, like the channel gateway, so the paywall lists both in a 402's
// `accepts` (paychan first) and dispatches by `accepted.scheme`.
//
// It serves after verifying and recording, and settles right after (docs/PROTOCOL.md §8):
// - here, in memory: the terms are this route's, the 65-byte ECDSA signature recovers to `from`
//   under the token's EIP-712 domain (never an ERC-1271 answer, which the payer could revoke before
//   the transfer lands);
// - on the chain: the token would carry the transfer out now (an eth_call), and the payer's balance;
// - in the database, in one transaction (src/ledger/exactPayments.ts): the authorization is new, it
//   stays valid long enough to settle, the payer's balance covers it on top of everything it has in
//   flight, and the payee's value in flight stays under its limit. Then the handler runs.
// Once the handler answered, a 5xx voids the payment (it is never submitted); otherwise `paychan work`
// submits the transfer through the outbox, with the settlement key whose nonces the TxManager owns.
import { getAddress, hexToBytes, size, type Address, type Hex } from "viem";
import { PaymentError } from "../../protocol/Errors.js";
import { networkOf } from "../../protocol/wire.js";
import type { PaidRequest, PaymentHeader, PaymentScheme, Requirements, Settled } from "../../gateway/PaymentScheme.js";
import { recoverSigner } from "../../gateway/signatures.js";
import { checkAcceptedTerms, requestKeyOf } from "../../gateway/requestTerms.js";
import { tokenAsset, type Asset } from "../../ledger/asset.js";
import type { Database } from "../../ledger/db.js";
import {
  acceptExactPayment,
  claimExactRetry,
  completeExactPayment,
  type ExactAcceptOutcome,
  type ExactCharge,
  type ExactLimits,
} from "../../ledger/exactPayments.js";
import type { Quote } from "../../policy/prices.js";
import type { AuthorizationReader } from "./Eip3009Token.js";
import { EXACT, authorizationDigest, exactPaymentSchema, type ExactPayment, type ExactReceipt, type TokenDomain, type TransferAuthorization } from "./eip3009.js";

/** What the scheme needs from the database (src/ledger/exactPayments.ts implements it). */
export interface ExactStore {
  accept(charge: ExactCharge, limits: ExactLimits): Promise<ExactAcceptOutcome>;
  claimRetry(key: Pick<ExactCharge, "chainId" | "token" | "payer" | "nonce" | "requestKey">, withinSeconds: number, maxRetries: number): Promise<string | undefined>;
  complete(paymentId: string, served: boolean): Promise<void>;
}

/** The store on paychan's database. */
export function databaseExactStore(db: Pick<Database, "prisma" | "sql">): ExactStore {
  return {
    accept: (charge, limits) => acceptExactPayment(db.prisma, charge, limits),
    claimRetry: (key, withinSeconds, maxRetries) => claimExactRetry(db.sql, key, withinSeconds, maxRetries),
    complete: (paymentId, served) => completeExactPayment(db.sql, paymentId, served),
  };
}

export type ExactSchemeOptions = {
  /** The token's EIP-712 domain (its chain and address included), read at start-up. */
  domain: TokenDomain;
  payee: Address;
  store: ExactStore;
  token: AuthorizationReader;
  /** The most the payee has accepted and not yet settled, all payers together, in token base units:
   * the bound on what serving before settling can lose. */
  maxUnsettled: bigint;
  /** The validity the 402 asks for (x402's maxTimeoutSeconds; the stock client signs exactly it), and
   * within which an identical retry is served again (default 300). */
  timeoutSeconds?: number;
  /** An authorization must stay valid this long when accepted, for `paychan work` to land its
   * transfer (default half of timeoutSeconds). */
  minValiditySeconds?: number;
};

export type ExactAuthorization = Settled & { receipt: ExactReceipt; retried: boolean };

/** How many times one payment is served again to identical retries, as for paychan vouchers. */
const MAX_RETRIES = 3;

export class ExactScheme implements PaymentScheme {
  readonly scheme = EXACT;
  readonly network: string;
  readonly payee: Address;
  readonly domain: TokenDomain;
  /** The token as the ledger and the price table name it. */
  readonly asset: Asset;
  readonly timeoutSeconds: number;
  readonly minValiditySeconds: number;
  readonly maxUnsettled: bigint;
  private readonly store: ExactStore;
  private readonly token: AuthorizationReader;

  constructor(options: ExactSchemeOptions) {
    this.domain = { ...options.domain, verifyingContract: getAddress(options.domain.verifyingContract) };
    this.network = networkOf(this.domain.chainId);
    this.payee = getAddress(options.payee);
    this.asset = tokenAsset(this.domain.chainId, this.domain.verifyingContract);
    this.timeoutSeconds = options.timeoutSeconds ?? 300;
    this.minValiditySeconds = options.minValiditySeconds ?? Math.floor(this.timeoutSeconds / 2);
    this.maxUnsettled = options.maxUnsettled;
    this.store = options.store;
    this.token = options.token;
  }

  /** The token's address. */
  get tokenAddress(): Address {
    return this.domain.verifyingContract;
  }

  requirements(quote: Quote): Requirements | undefined {
    const price = quote.get(this.asset);
    return price === undefined ? undefined : this.terms(price);
  }

  private terms(price: bigint) {
    return {
      scheme: EXACT,
      network: this.network,
      amount: price,
      asset: this.tokenAddress,
      payTo: this.payee,
      maxTimeoutSeconds: this.timeoutSeconds,
      extra: { name: this.domain.name, version: this.domain.version },
    };
  }

  async authorize(payment: PaymentHeader, quote: Quote, request: PaidRequest): Promise<ExactAuthorization> {
    const price = quote.get(this.asset);
    if (price === undefined) throw new PaymentError("unsupported_scheme", `This resource is not priced in ${this.asset}.`);
    const { accepted, payload } = parse(payment.json);
    this.checkOffer(accepted, price);
    const authorization: TransferAuthorization = payload.authorization;
    this.checkAuthorization(authorization, price);
    this.checkSignature(authorization, payload.signature);
    // No channel: the signer of the transfer is both the account and the payer, and cannot step up.
    request.admit?.({ account: authorization.from, payer: authorization.from, canStepUp: false });

    const charge: ExactCharge = {
      chainId: this.domain.chainId,
      token: this.tokenAddress,
      payee: this.payee,
      payer: authorization.from,
      nonce: authorization.nonce,
      value: authorization.value,
      validAfter: authorization.validAfter,
      validBefore: authorization.validBefore,
      signature: payload.signature,
      requestKey: requestKeyOf(request.method, request.url, payment.header),
    };
    const [simulation, balance] = await Promise.all([
      this.token.simulate(authorization, payload.signature),
      this.token.balanceOf(authorization.from),
    ]);
    if (!simulation.ok) {
      // A resend of a request already paid, whose transfer has landed since: the chain calls it used.
      const earlier = await this.store.claimRetry(charge, this.timeoutSeconds, MAX_RETRIES);
      if (earlier) return this.authorization(charge, earlier, true);
      throw await this.explainRefusal(authorization, balance, simulation.reason);
    }
    const outcome = await this.store.accept(charge, {
      balance,
      maxUnsettled: this.maxUnsettled,
      minValiditySeconds: this.minValiditySeconds,
      retryWithinSeconds: this.timeoutSeconds,
      maxRetries: MAX_RETRIES,
    });
    if (outcome.ok) return this.authorization(charge, outcome.paymentId, outcome.retried);
    switch (outcome.refusal) {
      case "AUTHORIZATION_USED":
        throw used();
      case "INSUFFICIENT_BALANCE":
        throw new PaymentError(
          "insufficient_balance",
          `${authorization.from} holds ${balance} of the token, which does not cover ${authorization.value} on top of the ${outcome.payerInFlight} of its payments still settling; wait for them to land or fund the account.`,
          { balance: balance.toString(), inFlight: outcome.payerInFlight.toString() },
        );
      case "UNSETTLED_LIMIT":
        throw new PaymentError(
          "temporarily_unavailable",
          `This seller has ${outcome.payeeInFlight} in exact payments waiting to settle, its limit; retry in a moment, or pay with a paychan channel. You were not charged.`,
        );
      case "EXPIRES_TOO_SOON":
        throw new PaymentError(
          "authorization_expired",
          `The authorization is valid until ${authorization.validBefore}, less than the ${this.minValiditySeconds} seconds from now (${outcome.chainNow}, chain time) its transfer needs to land; sign one valid for ${this.timeoutSeconds} seconds.`,
        );
      case "NOT_YET_VALID":
        throw new PaymentError("authorization_not_yet_valid", `The authorization is not valid before ${authorization.validAfter} (chain time now ${outcome.chainNow}).`);
    }
  }

  private authorization(charge: ExactCharge, paymentId: string, retried: boolean): ExactAuthorization {
    return {
      paymentId,
      retried,
      // A retry served again never voids: the request it repeats may have been served.
      complete: async (status) => {
        if (retried && status >= 500) return;
        await this.store.complete(paymentId, status < 500);
      },
      receipt: { success: true, scheme: EXACT, network: this.network, payer: charge.payer, transaction: "", amount: charge.value, paymentId },
    };
  }

  /** The `accepted` entry must be what this gateway offers for this request, field by field. */
  private checkOffer(accepted: ExactPayment["accepted"], price: bigint): void {
    if (accepted.network !== this.network) throw new PaymentError("wrong_network", `This gateway is paid on ${this.network}, not ${accepted.network}.`);
    if (accepted.asset !== this.tokenAddress) throw new PaymentError("wrong_asset", `exact payments here are in the token ${this.tokenAddress}.`);
    if (accepted.payTo !== this.payee) throw new PaymentError("wrong_payee", `exact payments here pay ${this.payee}.`);
    const offered = this.terms(price);
    checkAcceptedTerms([
      ["amount", accepted.amount, offered.amount],
      ["maxTimeoutSeconds", accepted.maxTimeoutSeconds, offered.maxTimeoutSeconds],
      ["extra.name", accepted.extra.name, offered.extra.name],
      ["extra.version", accepted.extra.version, offered.extra.version],
    ]);
  }

  /** The authorization itself must move this price to this payee. */
  private checkAuthorization(authorization: TransferAuthorization, price: bigint): void {
    if (authorization.to !== this.payee) throw new PaymentError("wrong_payee", `The authorization must transfer to ${this.payee}, not ${authorization.to}.`);
    if (authorization.value !== price) {
      throw new PaymentError("terms_mismatch", `The authorization transfers ${authorization.value}; this request costs ${price}.`, { field: "authorization.value" });
    }
  }

  /**
   * Only a 65-byte ECDSA signature by `from` (low s, v 27 or 28, as the token checks it) is accepted:
   * the request is served before the transfer lands, and a contract wallet's ERC-1271 answer (or an
   * ERC-6492 wrapper awaiting a deployment) could change in between.
   */
  private checkSignature(authorization: TransferAuthorization, signature: Hex): void {
    if (size(signature) !== 65) {
      throw new PaymentError("invalid_signature", "exact payments here take a 65-byte ECDSA signature by `from`; smart-wallet (ERC-1271, ERC-6492) signatures are not accepted.");
    }
    const recovered = recoverSigner(authorizationDigest(this.domain, authorization), hexToBytes(signature));
    if (recovered !== authorization.from.toLowerCase()) {
      throw new PaymentError("invalid_signature", `The authorization is not signed by ${authorization.from} for the token's EIP-712 domain ("${this.domain.name}", version "${this.domain.version}").`);
    }
  }

  /** Why the token would not carry the transfer out, in the terms a payer can act on. */
  private async explainRefusal(authorization: TransferAuthorization, balance: bigint, reason: string): Promise<PaymentError> {
    if (await this.token.isUsed(authorization.from, authorization.nonce)) return used();
    if (balance < authorization.value) {
      return new PaymentError("insufficient_balance", `${authorization.from} holds ${balance} of the token, less than ${authorization.value}.`, {
        balance: balance.toString(),
      });
    }
    return new PaymentError("authorization_rejected", `The token refuses this transfer: ${reason}`);
  }
}

function parse(json: unknown): ExactPayment {
  const parsed = exactPaymentSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PaymentError("malformed_payment", `Payment payload is invalid at ${issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "(root)"}.`);
  }
  return parsed.data;
}

function used(): PaymentError {
  return new PaymentError("authorization_used", "This authorization was already used; sign a new one (a fresh nonce) for each request.");
}

