// Writes the JSON Schemas (draft 2020-12) of the three x402 headers of the `paychan` scheme into
// docs/schemas/, from the zod validators the gateway and the SDK use (src/protocol/wire.ts), so a
// client in another language validates exactly what the server accepts. The schemas describe the JSON
// as sent (before the validators turn amounts into bigints). test/protocol/schemas.test.ts fails when
// they drift: rerun `npm run schemas`.
import { writeFile } from "node:fs/promises";
import { headerSchemas } from "../src/protocol/schemas.js";

for (const [name, schema] of Object.entries(headerSchemas())) {
  await writeFile(`docs/schemas/${name}.schema.json`, `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote docs/schemas/${name}.schema.json`);
}
