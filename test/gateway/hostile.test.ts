// Hostile input at the paywall, through real HTTP against a real seller: every malformed, oversized,
// mistyped, duplicated or cleverly encoded PAYMENT-SIGNATURE gets a 400/402 with a stable code and a
// sentence, never a 500, never the handler, never a payment row; path spellings cannot reach the
// handler around the paywall; and the server still takes a correctly paid request afterwards.
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import fc from "fast-check";
import { secp256k1 } from "@noble/curves/secp256k1";
import { hexToBytes, numberToHex, parseEther, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { errorStatus } from "../../src/protocol/Errors.js";
import { signVoucher, voucherDigest } from "../../src/protocol/Voucher.js";
import {
  HEADERS,
  MAX_HEADER_BYTES,
  decodePaymentRequired,
  decodeReceipt,
  encodeHeader,
  type PaymentRequirements,
} from "../../src/protocol/wire.js";
import { toBigInt } from "../../src/ledger/amount.js";
import { describeEachDatabase } from "../ledger/helpers.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { PRICE, buyerFetch, claimableVoucher, openBuyerChannel, startSeller, type Buyer, type Seller } from "../helpers/seller.js";

const CODES = Object.keys(errorStatus);
const MAX_UINT256 = 2n ** 256n - 1n;
const SECP256K1_N = secp256k1.CURVE.n;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Reply = { status: number; headers: Record<string, string>; body: string };

/** One HTTP/1.1 request written byte for byte (fetch would normalize paths and refuse odd header
 * bytes), read until the server closes the connection. */
function rawRequest(seller: Seller, opts: { method?: string; path?: string; headers?: [string, string | Buffer][] } = {}): Promise<Reply> {
  const { hostname, port } = new URL(seller.url);
  const lines: Buffer[] = [Buffer.from(`${opts.method ?? "GET"} ${opts.path ?? "/quote"} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n`, "latin1")];
  for (const [name, value] of opts.headers ?? []) {
    lines.push(Buffer.from(`${name}: `, "latin1"), typeof value === "string" ? Buffer.from(value, "latin1") : value, Buffer.from("\r\n"));
  }
  lines.push(Buffer.from("\r\n"));
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      const [statusLine, ...headerLines] = text.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine!.split(" ")[1]), headers, body: Buffer.from(text.slice(split + 4), "latin1").toString("utf8") });
    });
    socket.end(Buffer.concat(lines));
  });
}

async function fetchQuote(seller: Seller, header: string): Promise<Reply> {
  const response = await fetch(`${seller.url}/quote`, { headers: { [HEADERS.signature]: header } });
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  return { status: response.status, headers, body: await response.text() };
}

/** The shape every refusal must have: 400/402, a JSON {error: <known code>, message: <sentence>}, and
 * the same code in PAYMENT-REQUIRED. Returns the code. */
function refusal(reply: Reply, what: string): string {
  expect([400, 402], `${what}: status ${reply.status} ${reply.body}`).to.include(reply.status);
  let body: { error?: unknown; message?: unknown };
  try {
    body = JSON.parse(reply.body);
  } catch {
    throw new Error(`${what}: body is not JSON: ${reply.body.slice(0, 200)}`);
  }
  expect(CODES, `${what}: ${reply.body}`).to.include(body.error);
  expect(body.message, what).to.be.a("string").and.not.empty;
  expect(errorStatus[body.error as keyof typeof errorStatus], what).to.equal(reply.status);
  expect(decodePaymentRequired(reply.headers[HEADERS.required.toLowerCase()]!).code, what).to.equal(body.error);
  return body.error as string;
}

/** JSON text with keys JSON.stringify cannot produce from an object literal (`__proto__`). */
function withRawKey(json: string, pathToObject: string[], key: string, valueJson: string, drop?: string): string {
  const value = JSON.parse(json) as Record<string, Json>;
  let target = value as Record<string, Json>;
  for (const p of pathToObject) target = target[p] as Record<string, Json>;
  const marker = `__marker_${randomBytes(4).toString("hex")}__`;
  if (drop) delete target[drop];
  target[marker] = 0;
  return JSON.stringify(value).replace(`"${marker}":0`, `${JSON.stringify(key)}:${valueJson}`);
}

function b64(text: string | Uint8Array): string {
  return Buffer.from(typeof text === "string" ? Buffer.from(text, "utf8") : text).toString("base64");
}

describeEachDatabase("paywall under hostile input over HTTP", (db) => {
  let chain: EscrowFixture;
  let seller: Seller;
  let terms: PaymentRequirements;
  let buyer: Buyer;
  let key: Hex;
  /** What the seller has accepted on `buyer`'s channel (kept in step with successful payments). */
  let accepted = 0n;

  const payments = () => db().prisma.payment.count();

  /** A correct payment object for `buyer`'s channel at `cumulative` (default: the next total). */
  async function payment(cumulative = accepted + PRICE) {
    const voucher = await signVoucher(buyer.session, { channelId: buyer.channel.id, cumulativeAmount: cumulative }, buyer.channel.location);
    return structuredClone({
      x402Version: 2,
      accepted: JSON.parse(JSON.stringify(terms, (_k, v) => (typeof v === "bigint" ? v.toString() : v))),
      payload: { channel: { ...buyer.channel.config }, voucher: { ...voucher, cumulativeAmount: cumulative.toString() } },
    }) as { x402Version: Json; accepted: Record<string, Json>; payload: { channel: Record<string, Json>; voucher: Record<string, Json> } } & Record<string, Json>;
  }

  /** Runs `attempt` and checks it neither ran the handler nor wrote a payment. */
  async function unpaid<T>(attempt: () => Promise<T>): Promise<T> {
    const [handled, rows] = [seller.handled.count, await payments()];
    const result = await attempt();
    expect(seller.handled.count, "the handler ran").to.equal(handled);
    expect(await payments(), "a payment row was written").to.equal(rows);
    return result;
  }

  /** Sends a header that must pay exactly once: 200, one handler run, one payment row. */
  async function paysOnce(header: string, what: string) {
    const [handled, rows] = [seller.handled.count, await payments()];
    const reply = await fetchQuote(seller, header);
    expect(reply.status, `${what}: ${reply.body}`).to.equal(200);
    const receipt = decodeReceipt(reply.headers[HEADERS.response.toLowerCase()]!);
    expect(receipt.cumulativeAmount, what).to.equal(accepted + PRICE);
    expect(receipt.charged, what).to.equal(PRICE);
    accepted += PRICE;
    expect(seller.handled.count - handled, what).to.equal(1);
    expect((await payments()) - rows, what).to.equal(1);
  }

  before(async () => {
    chain = await deployEscrow();
    seller = await startSeller(chain, db());
    const response = await fetch(`${seller.url}/quote`);
    terms = decodePaymentRequired(response.headers.get(HEADERS.required)!).accepts[0]!;
    key = generatePrivateKey();
    const session = privateKeyToAccount(key);
    const wallet = chain.payer as unknown as Wallet;
    const channel = await openChannel({
      wallet,
      publicClient: chain.publicClient as never,
      escrow: chain.escrow.address,
      payee: chain.payee.account.address,
      signer: session.address,
      amount: parseEther("0.01"),
      withdrawDelay: 7200,
    });
    buyer = { channel, session, wallet };
    await paysOnce(encodeHeader(await payment()), "the first, ordinary payment");
  });
  after(async () => seller.close());

  describe("header values", () => {
    it("treats an absent, empty or whitespace-only header as no payment (402 payment_required)", async () => {
      for (const value of ["", "   ", "\t", " \t "]) {
        const reply = await unpaid(() => rawRequest(seller, { headers: [[HEADERS.signature, value]] }));
        expect(refusal(reply, JSON.stringify(value))).to.equal("payment_required");
      }
    });

    it("refuses a header over 8 KiB with 400 header_too_large, and one just under it as malformed", async () => {
      const over = await unpaid(() => fetchQuote(seller, "A".repeat(MAX_HEADER_BYTES + 1)));
      expect(refusal(over, "8 KiB + 1")).to.equal("header_too_large");
      const validButHuge = b64(JSON.stringify({ ...(await payment()), pad: "x".repeat(MAX_HEADER_BYTES) }));
      expect(refusal(await unpaid(() => fetchQuote(seller, validButHuge)), "valid JSON padded past 8 KiB")).to.equal("header_too_large");
      const under = await unpaid(() => fetchQuote(seller, "A".repeat(MAX_HEADER_BYTES)));
      expect(refusal(under, "8 KiB of A")).to.equal("malformed_payment");
    });

    it("lets Node refuse headers beyond its own limit (431) without reaching the app", async () => {
      // Node's 16 KiB header limit answers before Express: not the app's JSON, but not served either.
      const reply = await unpaid(() => rawRequest(seller, { headers: [[HEADERS.signature, "A".repeat(64 * 1024)]] }));
      expect(reply.status).to.equal(431);
    });

    it("refuses non-ASCII and invalid UTF-8 bytes, raw or inside base64, as malformed_payment", async () => {
      const values: (string | Buffer)[] = [
        Buffer.from("ünïcödé €😀", "utf8"),
        Buffer.from([0xff, 0xfe, 0xfd, 0x80, 0x81]),
        Buffer.concat([Buffer.from(encodeHeader(await payment())), Buffer.from([0xc3, 0xa9])]),
        b64(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), // {"\xff\xfe":1}: not UTF-8
        b64(new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from("{}")])), // BOM then {}
        b64("\u0000"),
        "%%%not-base64%%%",
        "eyJ4NDAyVmVyc2lvbiI6Mn0", // base64 of {"x402Version":2} without padding
        "eyJ4NDAyVmVyc2lvbiI6Mn0===",
        "=",
        "A",
        "e30=e30=",
      ];
      for (const value of values) {
        const reply = await unpaid(() => rawRequest(seller, { headers: [[HEADERS.signature, value]] }));
        const code = refusal(reply, String(value));
        expect(["malformed_payment", "unsupported_scheme"], String(value)).to.include(code);
      }
    });

    it("does not crash on control characters in the header (Node's own 400, handler not run)", async () => {
      const reply = await unpaid(() => rawRequest(seller, { headers: [[HEADERS.signature, Buffer.from([0x65, 0x01, 0x7f])]] }));
      expect(reply.status).to.equal(400);
    });

    it("refuses two PAYMENT-SIGNATURE headers, even two copies of a valid one, and charges nothing", async () => {
      const header = encodeHeader(await payment());
      for (const pair of [[header, header], [header, "garbage"], ["", header], [header, ""]]) {
        const reply = await unpaid(() => rawRequest(seller, { headers: pair.map((v) => [HEADERS.signature, v] as [string, string]) }));
        expect(refusal(reply, `duplicate ${pair.map((v) => v.slice(0, 8))}`)).to.equal("malformed_payment");
      }
      // Header names are case-insensitive: differently cased duplicates are still duplicates.
      const mixed = await unpaid(() => rawRequest(seller, { headers: [["payment-signature", header], ["Payment-Signature", header]] }));
      expect(refusal(mixed, "mixed-case duplicate")).to.equal("malformed_payment");
    });
  });

  describe("JSON structure", () => {
    it("refuses deeply nested JSON as malformed_payment", async () => {
      for (const json of [
        "[".repeat(3000) + "]".repeat(3000),
        '{"a":'.repeat(900) + "1" + "}".repeat(900),
        `{"x402Version":2,"accepted":${"[".repeat(2500)}${"]".repeat(2500)}}`,
        `{"x402Version":2,"accepted":{"scheme":"paychan"},"payload":${'{"channel":'.repeat(400)}1${"}".repeat(400)}}`,
      ]) {
        const reply = await unpaid(() => fetchQuote(seller, b64(json)));
        expect(refusal(reply, json.slice(0, 40))).to.equal("malformed_payment");
      }
    });

    it("refuses JSON roots that are not objects", async () => {
      for (const json of ["null", "true", "0", "2", '"paychan"', "[]", "[2]", '[{"x402Version":2}]', "1e999"]) {
        const reply = await unpaid(() => fetchQuote(seller, b64(json)));
        expect(refusal(reply, json)).to.equal("malformed_payment");
      }
    });

    it("is not fooled by __proto__ / constructor keys, and none of them pollutes Object.prototype", async () => {
      const base = JSON.stringify(await payment());
      const refused: [string, string][] = [
        // The version only through a __proto__ key: JSON.parse makes it an own key, zod sees no version.
        [withRawKey(base, [], "__proto__", '{"x402Version":2}', "x402Version"), "malformed_payment"],
        [withRawKey(base, ["accepted"], "__proto__", '{"scheme":"paychan"}', "scheme"), "malformed_payment"],
        [withRawKey(base, ["payload", "channel"], "__proto__", '{"withdrawDelay":7200}', "withdrawDelay"), "malformed_payment"],
        [withRawKey(base, ["payload", "voucher"], "constructor", '{"prototype":{"cumulativeAmount":"1"}}', "cumulativeAmount"), "malformed_payment"],
        [withRawKey(base, [], "__proto__", "null", "payload"), "malformed_payment"],
      ];
      for (const [json, code] of refused) {
        const reply = await unpaid(() => fetchQuote(seller, b64(json)));
        expect(refusal(reply, json.slice(0, 60)), json).to.equal(code);
      }
      expect(({} as Record<string, unknown>).x402Version).to.equal(undefined);
      expect(({} as Record<string, unknown>).withdrawDelay).to.equal(undefined);
      expect(({} as Record<string, unknown>).scheme).to.equal(undefined);
    });

    it("ignores unknown fields, __proto__ and constructor keys included, and charges such a payment once", async () => {
      let json = JSON.stringify(await payment());
      json = withRawKey(json, [], "__proto__", '{"polluted":true,"x402Version":1}');
      json = withRawKey(json, ["accepted"], "__proto__", '{"polluted":true}');
      json = withRawKey(json, ["accepted", "extra"], "constructor", '{"prototype":{"polluted":true}}');
      json = withRawKey(json, ["payload"], "__proto__", '{"polluted":true}');
      json = withRawKey(json, ["payload", "channel"], "__proto__", '{"withdrawDelay":0,"polluted":true}');
      json = withRawKey(json, ["payload", "voucher"], "__proto__", '{"cumulativeAmount":"1","polluted":true}');
      const object = JSON.parse(json) as Record<string, Record<string, Json>>;
      object.unknownRoot = { deep: [1, "two", null] };
      object.accepted!.unknownInAccepted = "x";
      object.accepted!.deep = JSON.parse("[".repeat(1500) + "]".repeat(1500));
      (object.payload!.voucher as Record<string, Json>).note = "please";
      // JSON.parse turned the raw __proto__ keys into own keys, and JSON.stringify keeps them.
      json = JSON.stringify(object);
      expect(json).to.include('"__proto__":{"withdrawDelay":0');
      await paysOnce(b64(json), "a payment carrying unknown and prototype-named fields");
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted")).to.equal(false);
    });
  });

  describe("field types and values", () => {
    type Bend = (p: Awaited<ReturnType<typeof payment>>) => void;
    const real = (p: Awaited<ReturnType<typeof payment>>) => p.payload.voucher.signature as string;
    const refused: [string, Bend, string][] = [
      // x402Version
      ['x402Version "2" (a string)', (p) => void (p.x402Version = "2"), "malformed_payment"],
      ["x402Version 1", (p) => void (p.x402Version = 1), "unsupported_version"],
      ["x402Version 3", (p) => void (p.x402Version = 3), "unsupported_version"],
      ["x402Version 2.5", (p) => void (p.x402Version = 2.5), "unsupported_version"],
      ["x402Version null", (p) => void (p.x402Version = null), "malformed_payment"],
      ["accepted.scheme 7", (p) => void (p.accepted.scheme = 7), "malformed_payment"],
      // numbers where strings are expected and vice versa
      ["cumulativeAmount as a number", (p) => void (p.payload.voucher.cumulativeAmount = Number(p.payload.voucher.cumulativeAmount)), "malformed_payment"],
      ["accepted.amount as a number", (p) => void (p.accepted.amount = Number(PRICE)), "malformed_payment"],
      ["withdrawDelay as a string", (p) => void (p.payload.channel.withdrawDelay = "7200"), "malformed_payment"],
      ["maxTimeoutSeconds as a string", (p) => void (p.accepted.maxTimeoutSeconds = "60"), "malformed_payment"],
      ["channelId as a number", (p) => void (p.payload.voucher.channelId = 1), "malformed_payment"],
      ["signature as an array", (p) => void (p.payload.voucher.signature = [1, 2, 3]), "malformed_payment"],
      ["payer as a number", (p) => void (p.payload.channel.payer = 0x1234), "malformed_payment"],
      ["salt as true", (p) => void (p.payload.channel.salt = true), "malformed_payment"],
      ["payload as a string", (p) => void ((p as Record<string, Json>).payload = "payload"), "malformed_payment"],
      ["network as a number", (p) => void (p.accepted.network = 31337), "malformed_payment"],
      // amounts
      ["cumulativeAmount with a leading zero", (p) => void (p.payload.voucher.cumulativeAmount = `0${p.payload.voucher.cumulativeAmount}`), "malformed_payment"],
      ["cumulativeAmount negative", (p) => void (p.payload.voucher.cumulativeAmount = `-${p.payload.voucher.cumulativeAmount}`), "malformed_payment"],
      ["cumulativeAmount decimal", (p) => void (p.payload.voucher.cumulativeAmount = `${p.payload.voucher.cumulativeAmount}.0`), "malformed_payment"],
      ["cumulativeAmount with an exponent", (p) => void (p.payload.voucher.cumulativeAmount = "2e12"), "malformed_payment"],
      ["cumulativeAmount in hex", (p) => void (p.payload.voucher.cumulativeAmount = "0x1d1a94a2000"), "malformed_payment"],
      ["cumulativeAmount with a plus sign", (p) => void (p.payload.voucher.cumulativeAmount = `+${p.payload.voucher.cumulativeAmount}`), "malformed_payment"],
      ["cumulativeAmount with spaces", (p) => void (p.payload.voucher.cumulativeAmount = ` ${p.payload.voucher.cumulativeAmount} `), "malformed_payment"],
      ["cumulativeAmount empty", (p) => void (p.payload.voucher.cumulativeAmount = ""), "malformed_payment"],
      ["cumulativeAmount 2^256", (p) => void (p.payload.voucher.cumulativeAmount = (MAX_UINT256 + 1n).toString()), "malformed_payment"],
      ["cumulativeAmount of 100 digits", (p) => void (p.payload.voucher.cumulativeAmount = "9".repeat(100)), "malformed_payment"],
      ["cumulativeAmount in Arabic-Indic digits", (p) => void (p.payload.voucher.cumulativeAmount = "٢٠٠٠"), "malformed_payment"],
      // The signature covers the total: a changed total is not the signer's voucher, whatever it says.
      ["cumulativeAmount 0", (p) => void (p.payload.voucher.cumulativeAmount = "0"), "invalid_signature"],
      ["cumulativeAmount 2^256 - 1", (p) => void (p.payload.voucher.cumulativeAmount = MAX_UINT256.toString()), "invalid_signature"],
      ["accepted.amount that is not the price", (p) => void (p.accepted.amount = "1"), "terms_mismatch"],
      ["accepted.payTo of someone else", (p) => void (p.accepted.payTo = "0x00000000000000000000000000000000000000aa"), "terms_mismatch"],
      ["accepted.amount with a leading zero", (p) => void (p.accepted.amount = `0${PRICE}`), "malformed_payment"],
      ["accepted.amount negative", (p) => void (p.accepted.amount = `-${PRICE}`), "malformed_payment"],
      // addresses
      ["payer without 0x", (p) => void (p.payload.channel.payer = (p.payload.channel.payer as string).slice(2)), "malformed_payment"],
      ["payer with 0X", (p) => void (p.payload.channel.payer = `0X${(p.payload.channel.payer as string).slice(2)}`), "malformed_payment"],
      ["payer of 19 bytes", (p) => void (p.payload.channel.payer = (p.payload.channel.payer as string).slice(0, 40)), "malformed_payment"],
      ["payer of 21 bytes", (p) => void (p.payload.channel.payer = `${p.payload.channel.payer}00`), "malformed_payment"],
      ["payTo without 0x", (p) => void (p.accepted.payTo = (p.accepted.payTo as string).slice(2)), "malformed_payment"],
      ["escrow with a non-hex digit", (p) => void (p.accepted.extra = { ...(p.accepted.extra as object), escrow: `0x${"g".repeat(40)}` }), "malformed_payment"],
      // channel ids
      ["channelId of 31 bytes", (p) => void (p.payload.voucher.channelId = (p.payload.voucher.channelId as string).slice(0, 64)), "malformed_payment"],
      ["channelId of 33 bytes", (p) => void (p.payload.voucher.channelId = `${p.payload.voucher.channelId}00`), "malformed_payment"],
      ["channelId without 0x", (p) => void (p.payload.voucher.channelId = `00${(p.payload.voucher.channelId as string).slice(2)}`), "malformed_payment"],
      ["channelId of 63 hex digits", (p) => void (p.payload.voucher.channelId = (p.payload.voucher.channelId as string).slice(0, 65)), "malformed_payment"],
      ["salt of 65 hex digits", (p) => void (p.payload.channel.salt = `${p.payload.channel.salt}0`), "malformed_payment"],
      // withdrawDelay
      ["withdrawDelay 7200.5", (p) => void (p.payload.channel.withdrawDelay = 7200.5), "malformed_payment"],
      ["withdrawDelay -1", (p) => void (p.payload.channel.withdrawDelay = -1), "malformed_payment"],
      ["withdrawDelay 2^32", (p) => void (p.payload.channel.withdrawDelay = 2 ** 32), "malformed_payment"],
      ["withdrawDelay 1e300", (p) => void (p.payload.channel.withdrawDelay = 1e300), "malformed_payment"],
      ["withdrawDelay 2^53 + 2", (p) => void (p.payload.channel.withdrawDelay = 2 ** 53 + 2), "malformed_payment"],
      ["withdrawDelay 2^32 - 1 (another channel's terms)", (p) => void (p.payload.channel.withdrawDelay = 2 ** 32 - 1), "channel_id_mismatch"],
      ["withdrawDelay 0", (p) => void (p.payload.channel.withdrawDelay = 0), "withdraw_delay_too_short"],
      // signatures
      ["signature 0x (0 bytes)", (p) => void (p.payload.voucher.signature = "0x"), "malformed_payment"],
      ["signature empty", (p) => void (p.payload.voucher.signature = ""), "malformed_payment"],
      ["signature not hex", (p) => void (p.payload.voucher.signature = `0x${"zz".repeat(65)}`), "malformed_payment"],
      ["signature of 1025 bytes", (p) => void (p.payload.voucher.signature = `0x${"11".repeat(1025)}`), "malformed_payment"],
      ["signature of 1 byte", (p) => void (p.payload.voucher.signature = "0x1b"), "invalid_signature"],
      ["signature of 64 bytes (r‖s, compact)", (p) => void (p.payload.voucher.signature = real(p).slice(0, 130)), "invalid_signature"],
      ["signature of 66 bytes (trailing 00)", (p) => void (p.payload.voucher.signature = `${real(p)}00`), "invalid_signature"],
      ["signature of 66 bytes (leading 00)", (p) => void (p.payload.voucher.signature = `0x00${real(p).slice(2)}`), "invalid_signature"],
      ["signature of 130 bytes (twice)", (p) => void (p.payload.voucher.signature = `${real(p)}${real(p).slice(2)}`), "invalid_signature"],
      ["signature with the last hex digit cut (129 digits)", (p) => void (p.payload.voucher.signature = real(p).slice(0, -1)), "malformed_payment"],
      ["signature with an extra hex digit (131 digits)", (p) => void (p.payload.voucher.signature = `${real(p)}0`), "malformed_payment"],
      ["signature with v = 0", (p) => void (p.payload.voucher.signature = `${real(p).slice(0, -2)}${real(p).endsWith("1b") ? "00" : "01"}`), "invalid_signature"],
      ["signature with v = 29", (p) => void (p.payload.voucher.signature = `${real(p).slice(0, -2)}1d`), "invalid_signature"],
      ["signature with r = 0", (p) => void (p.payload.voucher.signature = `0x${"00".repeat(32)}${real(p).slice(66)}`), "invalid_signature"],
      ["signature zeroed", (p) => void (p.payload.voucher.signature = `0x${"00".repeat(65)}`), "invalid_signature"],
      [
        "the high-s twin of the real signature",
        (p) => {
          const sig = real(p);
          const s = SECP256K1_N - BigInt(`0x${sig.slice(66, 130)}`);
          const v = sig.endsWith("1b") ? "1c" : "1b";
          p.payload.voucher.signature = `${sig.slice(0, 66)}${numberToHex(s, { size: 32 }).slice(2)}${v}`;
        },
        "invalid_signature",
      ],
      // shape
      ["payload.channel missing", (p) => void delete (p.payload as Record<string, unknown>).channel, "malformed_payment"],
      ["accepted.extra missing", (p) => void delete p.accepted.extra, "malformed_payment"],
      ["payload null", (p) => void ((p as Record<string, Json>).payload = null), "malformed_payment"],
      ["accepted null", (p) => void ((p as Record<string, Json>).accepted = null), "malformed_payment"],
      ["accepted missing", (p) => void delete (p as Record<string, unknown>).accepted, "unsupported_scheme"],
    ];

    for (const [what, bend, code] of refused) {
      it(`refuses ${what} with ${code}`, async () => {
        const p = await payment();
        bend(p);
        const reply = await unpaid(() => fetchQuote(seller, encodeHeader(p)));
        expect(refusal(reply, what)).to.equal(code);
      });
    }

    it("accepts the documented leniencies (any address case, uppercase hex, unknown fields) and charges each once", async () => {
      const bends: [string, Bend][] = [
        ["lowercase addresses", (p) => {
          for (const k of ["payer", "payee", "token", "signer"]) p.payload.channel[k] = (p.payload.channel[k] as string).toLowerCase();
          p.accepted.payTo = (p.accepted.payTo as string).toLowerCase();
        }],
        ["uppercase-digit addresses, bytes32 and signature", (p) => {
          for (const k of ["payer", "payee", "signer"]) p.payload.channel[k] = `0x${(p.payload.channel[k] as string).slice(2).toUpperCase()}`;
          p.payload.channel.salt = `0x${(p.payload.channel.salt as string).slice(2).toUpperCase()}`;
          p.payload.voucher.channelId = `0x${(p.payload.voucher.channelId as string).slice(2).toUpperCase()}`;
          p.payload.voucher.signature = `0x${real(p).slice(2).toUpperCase()}`;
        }],
        ["extra unknown fields everywhere", (p) => {
          (p as Record<string, Json>).extraRoot = 1;
          p.accepted.extraField = { a: [1] };
          (p.payload as Record<string, Json>).extra = "x";
          p.payload.channel.nickname = "mine";
          p.payload.voucher.memo = 42;
        }],
      ];
      for (const [what, bend] of bends) {
        const p = await payment();
        bend(p);
        await paysOnce(encodeHeader(p), what);
        // The same voucher in its usual spelling is another request carrying a paid voucher: refused
        // as a replay (only a byte-identical retry is served again), not charged again.
        const again = await payment(accepted);
        expect(encodeHeader(again)).to.not.equal(encodeHeader(p));
        const replay = await unpaid(() => fetchQuote(seller, encodeHeader(again)));
        expect(refusal(replay, `${what} replayed`)).to.equal("voucher_replayed");
      }
    });
  });

  describe("properties", () => {
    const settings = { numRuns: 60, endOnFailure: true } as const;

    it("refuses arbitrary JSON values as the payment, never running the handler nor writing a row", async () => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (value) => {
          const header = encodeHeader(value);
          fc.pre(header.length <= MAX_HEADER_BYTES);
          refusal(await unpaid(() => fetchQuote(seller, header)), JSON.stringify(value).slice(0, 200));
        }),
        settings,
      );
    });

    it("refuses arbitrary printable strings as the header", async () => {
      await fc.assert(
        fc.asyncProperty(fc.string({ maxLength: 300 }), async (value) => {
          refusal(await unpaid(() => fetchQuote(seller, value)), JSON.stringify(value));
        }),
        settings,
      );
    });

    it("refuses arbitrary bytes (everything HTTP allows in a header value) as the header", async () => {
      const allowed = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09));
      await fc.assert(
        fc.asyncProperty(fc.array(allowed, { maxLength: 300 }), async (bytes) => {
          const reply = await unpaid(() => rawRequest(seller, { headers: [[HEADERS.signature, Buffer.from(bytes)]] }));
          refusal(reply, Buffer.from(bytes).toString("hex"));
        }),
        settings,
      );
    });

    it("refuses any one-field mutation of an already-paid payment: arbitrary JSON in any place, or a field removed", async () => {
      const base = await payment(accepted); // already accepted: no mutation can be a new payment
      const paths: string[][] = [];
      const walk = (value: Json, path: string[]) => {
        paths.push(path);
        if (value && typeof value === "object" && !Array.isArray(value)) for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
      };
      walk(base as unknown as Json, []);
      const mutation = fc.record({
        path: fc.constantFrom(...paths.filter((p) => p.length > 0)),
        value: fc.option(fc.jsonValue({ maxDepth: 3 }), { nil: undefined }),
      });
      await fc.assert(
        fc.asyncProperty(mutation, async ({ path, value }) => {
          const p = structuredClone(base) as unknown as Record<string, Json>;
          let target = p;
          for (const k of path.slice(0, -1)) target = target[k] as Record<string, Json>;
          if (value === undefined) delete target[path.at(-1)!];
          else target[path.at(-1)!] = value as Json;
          const header = encodeHeader(p);
          fc.pre(header.length <= MAX_HEADER_BYTES);
          refusal(await unpaid(() => fetchQuote(seller, header)), `${path.join(".")} = ${JSON.stringify(value)}`.slice(0, 200));
        }),
        settings,
      );
    });
  });

  describe("route matching", () => {
    const variants = [
      "/quote/.", "/quote/..", "/quote/./", "//quote", "///quote", "/./quote", "/x/../quote", "/quote%2F", "/quote%2f", "/%71uote",
      "/%2Fquote", "/quote%00", "/quote%20", "/quote;x", "/quote;", "/QUOTE", "/Quote/", "/quote//", "/quote/x", "/quote.json",
      "/quote?x=%00", "/quote#frag", "/quote?", "/quote/?a=b", "/quote\\", "/%5Cquote", `http://evil.example/quote`,
      `http://evil.example//quote`, "/quote%09", "/quot%65",
    ];

    for (const method of ["GET", "HEAD"]) {
      it(`never serves ${method} variants of a paywalled path without payment (402, or 404 when nothing serves it)`, async () => {
        const seen: string[] = [];
        for (const path of variants) {
          const reply = await unpaid(() => rawRequest(seller, { method, path }));
          expect([402, 404], `${method} ${path}: ${reply.status}`).to.include(reply.status);
          seen.push(`${reply.status} ${path}`);
          if (reply.status === 402) {
            expect(decodePaymentRequired(reply.headers[HEADERS.required.toLowerCase()]!).code).to.equal("payment_required");
          }
        }
        // The canonical spellings are paywalled, not merely unrouted.
        for (const path of ["/QUOTE", "/Quote/", "/quote?", "/quote/?a=b", "http://evil.example/quote"]) {
          expect(seen, path).to.include(`402 ${path}`);
        }
      });
    }

    it("does not run the handler for other methods on the paywalled path", async () => {
      for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "M-SEARCH"]) {
        const reply = await unpaid(() => rawRequest(seller, { method, path: "/quote" }));
        expect(reply.body, method).not.to.include("the price of everything");
        expect(reply.status, method).to.not.equal(500);
      }
    });
  });

  describe("regressions", () => {
    /** A valid voucher signature for `cumulative` whose first hex digit is 0 (secp256k1 signing with
     * fresh nonces until r starts with a 0 nibble, about one in sixteen). */
    function signatureWithLeadingZeroNibble(cumulative: bigint): Hex {
      const digest = hexToBytes(voucherDigest({ channelId: buyer.channel.id, cumulativeAmount: cumulative }, buyer.channel.location));
      for (;;) {
        const sig = secp256k1.sign(digest, hexToBytes(key), { lowS: true, extraEntropy: randomBytes(32) });
        const hex = `0x${sig.r.toString(16).padStart(64, "0")}${sig.s.toString(16).padStart(64, "0")}${(27 + sig.recovery).toString(16)}` as Hex;
        if (hex[2] === "0") return hex;
      }
    }

    it("refuses a valid signature spelled with an odd number of hex digits (its leading 0 nibble stripped)", async () => {
      const canonical = signatureWithLeadingZeroNibble(accepted + PRICE);
      const p = await payment();
      // "0x0abc…" → "0xabc…" is not a byte string. viem's hexToBytes pads it on the left, back to the
      // real signature, so it used to be served (200) and stored verbatim as the voucher to settle:
      // a value other encoders refuse (odd length) or read differently, and a second spelling of a
      // signature already stored.
      p.payload.voucher.signature = `0x${canonical.slice(3)}`;
      const reply = await unpaid(() => fetchQuote(seller, encodeHeader(p)));
      expect(refusal(reply, "stripped nibble")).to.equal("malformed_payment");

      // The same signature, spelled with whole bytes, pays, and what was stored is claimable on chain.
      p.payload.voucher.signature = canonical;
      await paysOnce(encodeHeader(p), "the canonical spelling");
      const stored = await claimableVoucher(db(), buyer.channel.id);
      expect(stored.signature).to.equal(canonical);
      await chain.escrow.write.claim([buyer.channel.config, accepted, stored.signature], {
        account: chain.payee.account,
      });
    });
  });

  // Mocha runs a suite's own tests before its nested suites: this one must be in the last suite.
  describe("afterwards", () => {
    it("still takes correctly paid requests afterwards, each charged once", async () => {
      // On the channel every hostile request above named, at the total the server last accepted...
      await paysOnce(encodeHeader(await payment()), "the channel's next total");
      const stored = (await db().prisma.channel.findUnique({ where: { id: buyer.channel.id } }))!;
      expect(toBigInt(stored.acceptedCumulative)).to.equal(accepted);
      // ...and from an ordinary client on a new channel.
      const paidFetch = buyerFetch(await openBuyerChannel(chain));
      const [handled, rows] = [seller.handled.count, await payments()];
      for (let i = 1n; i <= 3n; i++) {
        const response = await paidFetch(`${seller.url}/quote`);
        expect(response.status, await response.clone().text()).to.equal(200);
        expect(decodeReceipt(response.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(PRICE * i);
      }
      expect(seller.handled.count - handled).to.equal(3);
      expect((await payments()) - rows).to.equal(3);
    });
  });
});
