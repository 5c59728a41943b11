// The payer's bound on metered usage (ChannelPayer, shared by createPaidFetch and PaychanSchemeClient):
// a server that says the channel owes more than the metered terms the payer signed allowed is not
// followed — neither in a receipt nor in a 402 — so the payer never signs usage it did not authorize.
import { expect } from "chai";
import { getAddress, zeroAddress } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ChannelPayer } from "../../src/client/ChannelPayer.js";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import { channelId } from "../../src/protocol/Channel.js";
import { SCHEME, networkOf, type PaymentRequirements, type Receipt } from "../../src/protocol/wire.js";

const PRICE = 10n;
const MAX = 100n;
const location = { chainId: 31337, escrow: getAddress("0x00000000000000000000000000000000000000e5") };

describe("a payer's bound on metered usage owed", () => {
  const session = privateKeyToAccount(generatePrivateKey());
  const config = {
    payer: getAddress("0x00000000000000000000000000000000000000a1"),
    payee: getAddress("0x00000000000000000000000000000000000000b2"),
    token: zeroAddress,
    signer: session.address,
    withdrawDelay: 86_400,
    salt: `0x${"11".repeat(32)}` as const,
  };
  const channel = { config, id: channelId(config, location), location };
  const terms = (extra: Partial<PaymentRequirements["extra"]> = {}, amount = PRICE): PaymentRequirements => ({
    scheme: SCHEME,
    network: networkOf(location.chainId),
    amount,
    asset: zeroAddress,
    payTo: config.payee,
    maxTimeoutSeconds: 60,
    extra: { escrow: location.escrow, minWithdrawDelay: 3600, ...extra },
  });
  const receipt = (cumulativeAmount: bigint, owed: bigint, maxAmount?: bigint): Receipt => ({
    success: true,
    scheme: SCHEME,
    network: networkOf(location.chainId),
    payer: config.payer,
    transaction: "",
    channelId: channel.id,
    paymentId: "p",
    charged: PRICE + owed,
    cumulativeAmount,
    remaining: 0n,
    owed,
    ...(maxAmount !== undefined && { maxAmount }),
  });

  it("follows a receipt's debt up to maxAmount − amount of the metered terms it signed, and pays it with the next voucher", async () => {
    const payer = new ChannelPayer({ channel, signer: session, maxPrice: MAX, store: new MemoryStateStore() });
    await payer.sign(terms({ maxAmount: MAX }), await payer.state());
    await payer.recordReceipt(receipt(PRICE, MAX - PRICE, MAX));
    expect((await payer.state()).owed).to.equal(MAX - PRICE);
    const next = await payer.sign(terms(), await payer.state());
    expect(next.payload.voucher.cumulativeAmount).to.equal(PRICE + (MAX - PRICE) + PRICE);
  });

  it("does not follow a receipt or a 402 claiming more than that, nor any debt after fixed-price terms", async () => {
    const payer = new ChannelPayer({ channel, signer: session, maxPrice: MAX, store: new MemoryStateStore() });
    await payer.sign(terms({ maxAmount: MAX }), await payer.state());
    await payer.recordReceipt(receipt(PRICE, MAX - PRICE + 1n, MAX));
    expect((await payer.state()).owed ?? 0n, "a receipt owing more than authorized").to.equal(0n);
    const claim = (owed: bigint) => terms({ channel: { channelId: channel.id, acceptedCumulative: PRICE, deposit: 10n ** 18n, owed } });
    expect(await payer.recover("usage_owed", claim(MAX - PRICE + 1n)), "a 402 owing more than authorized").to.equal(undefined);
    expect((await payer.recover("usage_owed", claim(MAX - PRICE)))?.owed).to.equal(MAX - PRICE);

    const fixed = new ChannelPayer({ channel: { ...channel, id: channelId({ ...config, salt: `0x${"22".repeat(32)}` }, location) }, signer: session, maxPrice: MAX });
    await fixed.sign(terms(), await fixed.state());
    expect(await fixed.recover("usage_owed", { ...claim(1n), extra: { ...claim(1n).extra, channel: { ...claim(1n).extra.channel!, channelId: fixed.channel.id } } })).to.equal(undefined);
  });

  it("refuses metered terms whose maximum exceeds its maxPrice, before signing", async () => {
    const payer = new ChannelPayer({ channel, signer: session, maxPrice: MAX - 1n, store: new MemoryStateStore() });
    let refused: unknown;
    await payer.sign(terms({ maxAmount: MAX }), await payer.state()).catch((error: unknown) => (refused = error));
    expect(String(refused)).to.match(/exceeds maxPrice/);
    expect((await payer.state()).signedMax).to.equal(0n);
  });
  it("asks a top-up callback for enough to cover what the channel owes and a metered request's maximum", async () => {
    const asked: bigint[] = [];
    const payer = new ChannelPayer({
      channel,
      signer: session,
      maxPrice: MAX,
      store: new MemoryStateStore(),
      onInsufficientDeposit: async ({ needed }) => void asked.push(needed),
    });
    await payer.sign(terms({ maxAmount: MAX }), await payer.state());
    await payer.recordReceipt(receipt(PRICE, 30n, MAX));
    const refused = terms({ maxAmount: MAX, channel: { channelId: channel.id, acceptedCumulative: PRICE, deposit: 50n, owed: 30n } });
    expect(await payer.recover("insufficient_deposit", refused)).to.not.equal(undefined);
    expect(asked).to.deep.equal([PRICE + 30n + MAX]);
  });
});
