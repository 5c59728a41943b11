// What payer and payee agree on: channel ids, vouchers, the x402 v2 wire format and error codes.
export * from "./Channel.js";
export * from "./Voucher.js";
export * from "./Errors.js";
export * from "./wire.js";
