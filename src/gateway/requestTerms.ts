// What every payment scheme checks of a paid request the same way: that the terms a payment accepts
// are the ones offered, field by field, and the key that identifies the request's identical resends.
import { createHash } from "node:crypto";
import { PaymentError } from "../protocol/Errors.js";

/** Refuses (terms_mismatch, naming the first field) unless each accepted value is the offered one. */
export function checkAcceptedTerms(fields: readonly (readonly [field: string, theirs: unknown, ours: unknown])[]): void {
  const differs = fields.find(([, theirs, ours]) => theirs !== ours);
  if (differs) {
    const [field, theirs, ours] = differs;
    throw new PaymentError(
      "terms_mismatch",
      `The payment accepts ${field} = ${String(theirs)}, but this request's terms say ${String(ours)}; pay the terms of the latest 402.`,
      { field },
    );
  }
}

/** What identifies a paid request for its retries: sha256 of its method, URL and payment header,
 * so only a byte-identical resend counts as a retry; the same voucher respelled is a replay. */
export function requestKeyOf(method: string, url: string, header: string): string {
  return createHash("sha256").update(`${method.toUpperCase()} ${url}\n${header}`).digest("base64url");
}
