// paychan for stock x402 clients: register `PaychanSchemeClient` on an `@x402/core` `x402Client`.
export { PaychanSchemeClient, type PaychanSchemeClientOptions } from "./PaychanSchemeClient.js";
