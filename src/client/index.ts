// The payer's SDK: open and top up channels through any viem wallet, and a fetch that pays 402s.
export {
  openChannel,
  topUp,
  readChannel,
  requestWithdrawal,
  finalizeWithdrawal,
  CLOSED,
  randomSalt,
  type OpenChannelOptions,
  type OpenedChannel,
  type Wallet,
} from "./channel.js";
export { createPaidFetch, type PaidFetch, type PaidFetchOptions } from "./paidFetch.js";
export type { AutoTopUpOptions, LowBalanceEvent, LowBalanceOptions, TopUpOutcome } from "./lowBalance.js";
export { signStepUp, type SignedStepUp, type StepUpRequest } from "../protocol/StepUp.js";
export { MemoryStateStore, WebStorageStateStore, type ChannelState, type ChannelStateStore } from "./stateStore.js";
