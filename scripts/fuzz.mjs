// npm run fuzz: the property-based/fuzz tests of test/fuzz, each property run
// CROWNEST_FUZZ_SCALE times (default 10) as often as `npm test` runs it.
// Passes vitest's output through and ends with the number of inputs tried.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const scale = process.env.CROWNEST_FUZZ_SCALE ?? "10";
const vitest = fileURLToPath(new URL("../node_modules/vitest/vitest.mjs", import.meta.url));
const child = spawn(process.execPath, [vitest, "run", "test/fuzz", "--testTimeout=1800000", "--hookTimeout=120000", ...process.argv.slice(2)], {
  // --expose-gc: properties that bound RSS sample it after a collection (retained memory, not garbage).
  env: { ...process.env, CROWNEST_FUZZ_SCALE: scale, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc`.trim() },
  stdio: ["ignore", "pipe", "inherit"],
});
let total = 0;
let pending = "";
child.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  pending += chunk.toString("utf8");
  const lines = pending.split("\n");
  pending = lines.pop() ?? "";
  for (const line of lines) {
    const m = /fuzz [\w-]+: (\d+) inputs tried/.exec(line);
    if (m) total += Number(m[1]);
  }
});
child.on("exit", (code, signal) => {
  process.stdout.write(`\nnpm run fuzz: ${total} inputs tried (CROWNEST_FUZZ_SCALE=${scale}); vitest ${code === 0 ? "passed" : `failed (${code ?? signal})`}\n`);
  process.exit(code ?? 1);
});
