// The `credit` payment scheme, free of any HTTP framework: a request paid from a buyer's prepaid
// credit account (topped up by card through src/rails) with an API key, listed in the 402 beside
// the channel scheme. The same guarantees as the channel: the charge is durable before the handler
// runs, a 5xx voids it, a byte-identical retry is served again and charged once, and two gateway
// processes on one database cannot spend the same credit (the spend statement decides, per account,
// against the account's row — see src/ledger/acceptCredit.ts).
//
// What is decided where: the payload's form, the key's scope and the price here; the key's
// revocation and the balance in the database, in the spend statement. The key cache holds only
// what never changes about a key (its account and scope).
import { createHash, randomUUID } from "node:crypto";
import { PaymentError } from "../protocol/Errors.js";
import { CREDIT_KEY_PREFIX, CREDIT_NETWORK, CREDIT_SCHEME, parseCreditPayment, type CreditReceipt, type CreditRequirements } from "../protocol/credit.js";
import { X402_VERSION } from "../protocol/wire.js";
import type { Asset } from "../ledger/asset.js";
import { FIAT_DECIMALS } from "../ledger/currency.js";
import type { Quote } from "../policy/prices.js";
import { LruMap } from "./ChannelCache.js";
import type { CreditCharge, CreditKeyRecord, CreditOutcome, CreditStore } from "./CreditStore.js";
import { GroupCommit } from "./GroupCommit.js";
import type { PaidRequest, PaymentHeader, PaymentScheme, Settled } from "./PaymentScheme.js";
import { requestKeyOf } from "./requestTerms.js";

export type CreditSchemeOptions = {
  store: CreditStore;
  /** Whose revenue these requests are: the seller's id in the books (SELLER_PAYABLE) and the 402's payTo. */
  seller: string;
  /** The credit asset, e.g. `fiat:USD` (base units: millionths). */
  asset: Asset;
  /** How long a payment stays valid: an identical retry within it is served again (default 60). */
  maxTimeoutSeconds?: number;
  /** Where a key's holder starts a card top-up, advertised in the 402 (e.g. "/credit/topups"). */
  topUpPath?: string;
  /** Keys remembered by this process (default 50,000). */
  keyCacheSize?: number;
};

export type CreditAuthorization = Settled & { accountId: string; price: bigint; retried: boolean; receipt: CreditReceipt };

const MAX_RETRIES = 3;

export class CreditScheme implements PaymentScheme {
  readonly scheme = CREDIT_SCHEME;
  readonly seller: string;
  readonly asset: Asset;
  private readonly store: CreditStore;
  private readonly maxTimeoutSeconds: number;
  private readonly topUpPath: string | undefined;
  private readonly commits: GroupCommit<CreditCharge, CreditOutcome>;
  private readonly keys: LruMap<string, CreditKeyRecord>;

  constructor(options: CreditSchemeOptions) {
    this.store = options.store;
    this.seller = options.seller;
    this.asset = options.asset;
    this.maxTimeoutSeconds = options.maxTimeoutSeconds ?? 60;
    this.topUpPath = options.topUpPath;
    this.commits = new GroupCommit((charges) => this.store.spend(charges), (charge) => charge.accountId);
    this.keys = new LruMap(options.keyCacheSize ?? 50_000);
  }

  /** The credit terms; answering a refusal that read the account's balance, with what it has left. */
  requirements(quote: Quote, refusal?: PaymentError): CreditRequirements | undefined {
    const price = quote.get(this.asset);
    if (price === undefined) return undefined;
    const balance = typeof refusal?.details?.balance === "string" ? BigInt(refusal.details.balance) : undefined;
    return {
      scheme: CREDIT_SCHEME,
      network: CREDIT_NETWORK,
      amount: price,
      asset: this.asset,
      payTo: this.seller,
      maxTimeoutSeconds: this.maxTimeoutSeconds,
      extra: {
        decimals: FIAT_DECIMALS,
        ...(this.topUpPath && { topUp: this.topUpPath }),
        ...(quote.pricing && { price: quote.pricing }),
        ...(balance !== undefined && { remaining: balance > 0n ? balance : 0n }),
      },
    };
  }

  /**
   * `Authorization: Bearer <credit key>` from a plain HTTP client, as a payment of this scheme. Its
   * `Idempotency-Key` makes a resend a retry; without one every request is a new charge.
   */
  fromAuthorization(token: string, idempotencyKey: string | undefined): PaymentHeader | undefined {
    if (!token.startsWith(CREDIT_KEY_PREFIX)) return undefined;
    const nonce = idempotencyKey ? `idem:${idempotencyKey}` : `once:${randomUUID()}`;
    return {
      header: `Bearer ${token}\nIdempotency-Key: ${nonce}`,
      json: { x402Version: X402_VERSION, accepted: { scheme: CREDIT_SCHEME }, payload: { key: token, nonce: nonce.slice(0, 128) } },
    };
  }

  async authorize(payment: PaymentHeader, quote: Quote, request: PaidRequest): Promise<CreditAuthorization> {
    const price = quote.get(this.asset);
    if (price === undefined) throw new PaymentError("unsupported_scheme", `This resource is not priced in ${this.asset}.`);
    const { accepted, payload } = parseCreditPayment(payment.json);
    if (accepted.amount !== undefined && accepted.amount !== price) {
      throw new PaymentError("terms_mismatch", `The payment accepts amount = ${accepted.amount}, but this request costs ${price}; pay the terms of the latest 402.`, { field: "amount" });
    }
    const key = await this.keyOf(payload.key);
    this.checkScope(key, request);
    request.admit?.({ account: key.accountId, payer: key.accountId, canStepUp: false });

    const charge: CreditCharge = {
      keyId: key.id,
      accountId: key.accountId,
      seller: this.seller,
      price,
      requestKey: requestKeyOf(request.method, request.url, payment.header),
      ...(quote.pricing && { pricing: quote.pricing.reason }),
    };
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.commits.submit(charge);
      if (outcome.ok) return this.authorization(key.accountId, outcome.paymentId, price, outcome.remaining, false);
      switch (outcome.refusal) {
        case "DUPLICATE_REQUEST": {
          const earlier = await this.store.claimRetry(key.accountId, charge.requestKey, this.maxTimeoutSeconds, MAX_RETRIES);
          if (earlier && earlier.price === price) return this.authorization(key.accountId, earlier.paymentId, price, earlier.remaining, true);
          throw new PaymentError(
            "credit_request_replayed",
            "This exact payment was already used for this request and cannot be served again; send a fresh nonce (or Idempotency-Key) to pay for a new request.",
          );
        }
        case "CONFLICT":
          if (attempt < 2) continue;
          throw new PaymentError("temporarily_unavailable", "The credit account is busy; retry in a moment. You were not charged.");
        case "KEY_NOT_FOUND":
          this.keys.set(hashOf(payload.key), { ...key, revoked: true });
          throw invalidKey();
        case "KEY_REVOKED":
          this.keys.set(hashOf(payload.key), { ...key, revoked: true });
          throw revokedKey();
        case "SUSPENDED":
          throw new PaymentError(
            "credit_suspended",
            `The credit account's balance is ${outcome.balance} (a refund or dispute after spending): it cannot pay until a top-up settles it.`,
            { reason: "negative_balance", balance: String(outcome.balance), price: price.toString(), ...(this.topUpPath && { topUp: this.topUpPath }) },
          );
        case "RECHARGE_FAILED":
          throw new PaymentError(
            "credit_suspended",
            "The credit account is suspended: its saved card was declined on every automatic recharge. Top it up (or update the card) to spend again.",
            { reason: "recharge_failed", balance: String(outcome.balance), price: price.toString(), ...(this.topUpPath && { topUp: this.topUpPath }) },
          );
        case "INSUFFICIENT_CREDIT":
          throw new PaymentError("insufficient_credit", `The credit account holds ${outcome.balance}, less than the price ${price}; top it up.`, {
            balance: String(outcome.balance),
            price: price.toString(),
            ...(this.topUpPath && { topUp: this.topUpPath }),
          });
        case "INVALID_PRICE":
          throw new PaymentError("price_unavailable", `No valid price for this request (${price}).`);
      }
    }
  }

  /** The key a secret names: from the cache, or the store. A revocation seen here refuses at once. */
  private async keyOf(secret: string): Promise<CreditKeyRecord> {
    const hash = hashOf(secret);
    let key = this.keys.get(hash);
    if (!key) {
      key = await this.store.findKey(secret);
      if (!key) throw invalidKey();
      this.keys.set(hash, key);
    }
    if (key.revoked) throw revokedKey();
    return key;
  }

  private checkScope(key: CreditKeyRecord, request: PaidRequest): void {
    if (key.asset !== this.asset) {
      throw new PaymentError("credit_key_out_of_scope", `This key's credit is in ${key.asset}; this seller charges ${this.asset}.`);
    }
    if (key.sellers && !key.sellers.includes(this.seller)) {
      throw new PaymentError("credit_key_out_of_scope", `This key may not pay ${this.seller}.`);
    }
    if (key.pathPrefixes) {
      const path = new URL(request.url).pathname;
      if (!key.pathPrefixes.some((prefix) => path.startsWith(prefix))) {
        throw new PaymentError("credit_key_out_of_scope", `This key may pay only for ${key.pathPrefixes.join(", ")}.`);
      }
    }
  }

  private authorization(accountId: string, paymentId: string, price: bigint, remaining: bigint, retried: boolean): CreditAuthorization {
    return {
      paymentId,
      accountId,
      price,
      retried,
      complete: async (status) => {
        if (status >= 500) await this.store.voidPayment(paymentId, `handler answered ${status}`);
      },
      receipt: {
        success: true,
        scheme: CREDIT_SCHEME,
        network: CREDIT_NETWORK,
        payer: accountId,
        transaction: "",
        paymentId,
        asset: this.asset,
        charged: price,
        remaining,
      },
    };
  }
}

function hashOf(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function invalidKey(): PaymentError {
  return new PaymentError("credit_key_invalid", "This credit key is not known here: check it, or ask for a new one.");
}

function revokedKey(): PaymentError {
  return new PaymentError("credit_key_revoked", "This credit key was revoked: ask the account's owner for a new one.");
}
