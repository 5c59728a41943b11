// The JSON Schemas in docs/schemas describe exactly what the gateway sends and accepts: generated from
// its validators (npm run schemas), checked here against real headers from the real gateway and SDK.
import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { Ajv2020 } from "ajv/dist/2020.js";
import { headerSchemas } from "../../src/protocol/schemas.js";
import { HEADERS } from "../../src/protocol/wire.js";
import { openTestDatabase } from "../ledger/helpers.js";
import type { Database } from "../../src/ledger/db.js";
import { PRICE, buyerFetch, deployEscrow, openBuyerChannel, startSeller, type Seller } from "../helpers/seller.js";

const decode = (header: string) => JSON.parse(Buffer.from(header, "base64").toString("utf8"));

describe("the headers' JSON Schemas", () => {
  let db: Database;
  let seller: Seller;
  before(async () => {
    db = await openTestDatabase("pglite");
    seller = await startSeller(await deployEscrow(), db);
  });
  after(async () => {
    await seller.close();
    await db.close();
  });

  it("are what `npm run schemas` generates from the validators", async () => {
    for (const [name, schema] of Object.entries(headerSchemas())) {
      const file = JSON.parse(await readFile(new URL(`../../docs/schemas/${name}.schema.json`, import.meta.url), "utf8"));
      expect(file, `docs/schemas/${name}.schema.json is stale: run npm run schemas`).to.deep.equal(schema);
    }
  });

  it("accept the headers a real 402, payment and receipt carry, and refuse broken ones", async () => {
    const ajv = new Ajv2020({ strict: false });
    const schemas = headerSchemas();
    const valid = (name: keyof typeof schemas, value: unknown) => ajv.validate(schemas[name] as object, value);
    const chain = await deployEscrow();
    const buyer = await openBuyerChannel(chain);
    const sent: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const header = request.headers.get(HEADERS.signature);
      if (header) sent.push(header);
      return fetch(request);
    };
    const unpaid = await fetch(`${seller.url}/quote`);
    const required = decode(unpaid.headers.get(HEADERS.required)!);
    const paid = await buyerFetch(buyer, { fetch: recording })(`${seller.url}/quote`);
    expect(paid.status).to.equal(200);
    const payment = decode(sent[0]!);
    const receipt = decode(paid.headers.get(HEADERS.response)!);

    expect(valid("payment-required", required), JSON.stringify(ajv.errors)).to.equal(true);
    expect(valid("payment-signature", payment), JSON.stringify(ajv.errors)).to.equal(true);
    expect(valid("payment-response", receipt), JSON.stringify(ajv.errors)).to.equal(true);
    expect(receipt.charged).to.equal(PRICE.toString());

    expect(valid("payment-signature", { ...payment, x402Version: 1 })).to.equal(false);
    expect(valid("payment-signature", { ...payment, payload: { ...payment.payload, voucher: { ...payment.payload.voucher, cumulativeAmount: 1 } } })).to.equal(false);
    expect(valid("payment-signature", { ...payment, payload: { ...payment.payload, voucher: { ...payment.payload.voucher, signature: "0xabc" } } })).to.equal(false);
    expect(valid("payment-signature", { ...payment, accepted: { ...payment.accepted, network: "base" } })).to.equal(false);
    expect(valid("payment-response", { ...receipt, charged: "-1" })).to.equal(false);
  });
});
