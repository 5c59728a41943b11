// Reads a base64 JSON header whatever its scheme (the protocol's decoders keep only their own).
export function decodeJsonHeader(header: string): unknown {
  return JSON.parse(Buffer.from(header, "base64").toString("utf8"));
}
