// The seller's side: the framework-free PaymentGateway and its Express adapter.
export { PaymentGateway, type Authorization, type GatewayOptions, type Resource } from "./PaymentGateway.js";
export { paywall, charge, type Price, type RouteSpec } from "./paywall.js";
export type { ChannelReader, ChannelRecord, PaymentStore } from "./PaymentStore.js";
