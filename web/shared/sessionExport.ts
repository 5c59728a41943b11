// Reading a session someone pasted: it must be a paychan export whose key is the channel's signer and
// whose channel id is the hash of its terms, or it is refused with a sentence that says why.
import { getAddress, isHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { z } from "zod";
import { channelConfigSchema, channelId } from "paychan/protocol";
import type { SessionExport } from "./store.js";

const hex32 = z.string().refine((s) => isHex(s, { strict: true }) && s.length === 66, "must be 32 bytes of 0x-hex");
const amount = z.string().regex(/^[0-9]+$/, "must be a decimal string of base units");

const schema = z.object({
  format: z.literal("paychan-session"),
  version: z.literal(1),
  session: z.object({
    key: hex32,
    channel: z.object({
      id: hex32,
      config: channelConfigSchema,
      location: z.object({ chainId: z.number().int().positive(), escrow: z.string().transform((s) => getAddress(s)) }),
    }),
    unit: z.object({ symbol: z.string().min(1).max(32), decimals: z.number().int().min(0).max(36) }),
    openedAt: z.number(),
    wallet: z.string().optional(),
  }),
  state: z.object({ accepted: amount, signedMax: amount }).nullable(),
});

export function parseSessionExport(text: string): SessionExport {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("That is not a session export: paste the JSON the Export button produced.");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`That is not a valid session export: ${issue.path.join(".") || "(root)"} ${issue.message}.`);
  }
  const { session, state } = parsed.data;
  const channel = { ...session.channel, id: session.channel.id.toLowerCase() as Hex };
  if (channelId(channel.config, channel.location).toLowerCase() !== channel.id) {
    throw new Error("The export's channel id does not match its terms: it was altered.");
  }
  if (privateKeyToAccount(session.key as Hex).address !== channel.config.signer) {
    throw new Error("The export's session key is not the channel's signer: it cannot pay on this channel.");
  }
  return { format: "paychan-session", version: 1, session: { ...session, key: session.key as Hex, channel }, state };
}
