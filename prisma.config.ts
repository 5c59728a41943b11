// Prisma CLI configuration. The application never reads this file: src/ledger/db.ts builds the client
// with a driver adapter and applies the migrations itself (src/ledger/migrate.ts).
import { readdirSync } from "node:fs";
import { defineConfig } from "prisma/config";

// `prisma generate` needs no schema engine, but the CLI insists on locating one and otherwise tries to
// download it, which fails offline. Where no engine is installed, point it at an existing file so that
// generation works; where one is (downloaded into @prisma/engines), leave it alone so that
// `prisma migrate deploy` keeps working.
const enginesDir = "node_modules/@prisma/engines";
const hasEngine = readdirSync(enginesDir).some((name) => name.startsWith("schema-engine"));
if (!hasEngine) process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= "prisma/schema.prisma";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/paychan" },
});
