// What payer and payee agree on: channel ids, vouchers, the x402 v2 wire format (the paychan and
// credit schemes) and error codes.
export * from "./Channel.js";
export * from "./Voucher.js";
export * from "./Errors.js";
export * from "./wire.js";
export * from "./credit.js";
export * from "./StepUp.js";
