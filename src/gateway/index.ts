// The seller's side: the framework-free PaymentGateway and its Express adapter.
export { PaymentGateway, type Authorization, type GatewayOptions } from "./PaymentGateway.js";
export { meterOf, paywall, payments, type Price, type PaywallOptions, type RouteSpec } from "./paywall.js";
export type { MeteredCharge, PaidRequest, PayerFacts, PaymentHeader, PaymentScheme, Requirements, Settled } from "./PaymentScheme.js";
export { UsageMeter } from "./UsageMeter.js";
export { PriceTable, type PriceNote, type PriceSpec, type Quote, type Rate } from "../policy/prices.js";
export {
  DemandMeter,
  RoutePricing,
  type DemandPricing,
  type DemandSample,
  type DemandSource,
  type PricingOptions,
  type VolumeCounter,
  type VolumeTier,
} from "../policy/pricing.js";
export type { ChannelReader, ChannelRecord, PaymentStore } from "./PaymentStore.js";
export { CreditScheme, type CreditAuthorization, type CreditSchemeOptions } from "./CreditScheme.js";
export type { CreditStore } from "./CreditStore.js";
export { RiskGate, type RiskGateOptions } from "./RiskGate.js";
export { RiskPolicy, type AnomalyRules, type Limits, type RiskDecision, type RiskRecord, type RiskRequest, type RiskRules, type VelocityLimits } from "../policy/risk.js";
