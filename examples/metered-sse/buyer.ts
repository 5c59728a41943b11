// The buyer's side of a metered stream: read the server-sent events as they come, and book the final
// receipt event so the next voucher pays the stream's usage straight away (without it, the next
// request is refused once with `usage_owed`, and createPaidFetch pays the debt it names then).
import type { PaidFetch } from "../../src/client/index.js";
import { RECEIPT_EVENT, decodeReceipt, type Receipt } from "../../src/protocol/index.js";

export async function generate(paidFetch: PaidFetch, url: string, onToken: (token: string) => void): Promise<Receipt> {
  const response = await paidFetch(url, { headers: { accept: "text/event-stream" } });
  if (response.status !== 200 || !response.body) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffered = "";
  let receipt: Receipt | undefined;
  const reader = response.body.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    buffered += decoder.decode(read.value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const lines = buffered.slice(0, end).split("\n");
      buffered = buffered.slice(end + 2);
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "message";
      const data = lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "";
      if (event === RECEIPT_EVENT) receipt = decodeReceipt(data);
      else onToken(data);
    }
  }
  if (!receipt) throw new Error("the stream ended without its receipt");
  await paidFetch.recordReceipt(receipt);
  return receipt;
}
