// Writes the published JSON Schemas (schemas/v<N>/<name>.schema.json) from
// json-schema.ts: `pnpm --filter @vfiokit/cli schemas` after changing one.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JSON_SCHEMA_VERSION, jsonSchemaOf, SCHEMAS, type SchemaName } from './json-schema';

export const SCHEMA_DIR = join(__dirname, '..', 'schemas', `v${JSON_SCHEMA_VERSION}`);

export function schemaFileText(name: SchemaName): string {
  return `${JSON.stringify(jsonSchemaOf(name), null, 2)}\n`;
}

if (require.main === module) {
  mkdirSync(SCHEMA_DIR, { recursive: true });
  for (const name of Object.keys(SCHEMAS) as SchemaName[]) writeFileSync(join(SCHEMA_DIR, `${name}.schema.json`), schemaFileText(name));
  process.stdout.write(`wrote ${Object.keys(SCHEMAS).length} schemas to ${SCHEMA_DIR}\n`);
}
