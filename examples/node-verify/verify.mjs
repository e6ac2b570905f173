// Verifies deliveries (JSON lines {secret, headers, body}) with the official
// Standard Webhooks library exactly as the README shows it: a whsec_ secret in
// the library's default mode, any other secret with {format: "raw"}.
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const file = process.argv[2];
const lines = readFileSync(file, "utf8").split("\n").filter(Boolean);
if (lines.length === 0) {
  console.error(`verify: no deliveries in ${file}`);
  process.exit(1);
}
let failed = 0;
for (const line of lines) {
  const { secret, headers, body } = JSON.parse(line);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const wh = secret.startsWith("whsec_") ? new Webhook(secret) : new Webhook(secret, { format: "raw" });
  try {
    const payload = wh.verify(body, lower);
    console.log(`verified ${payload.type} ${payload.eventId} (${secret.startsWith("whsec_") ? "whsec_ secret" : "raw secret"})`);
  } catch (e) {
    failed++;
    console.error(`verify: ${lower["webhook-id"]}: ${e.message}`);
  }
  // A tampered body must fail.
  try {
    wh.verify(body.replace("hello", "HELLO"), lower);
    failed++;
    console.error("verify: a tampered body passed");
  } catch {}
}
process.exit(failed ? 1 : 0);
