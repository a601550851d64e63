// Keeps V8's optimizing compiler (TurboFan) idle while the agent starts.
// Loading the generated descriptors runs a few loops hot enough (base64
// decoding, camel-casing field names) to be optimized, and that first
// TurboFan compilation pages in ~3 MiB of the node binary and its compiler
// zones, which then stay resident in every idle agent (idle RSS goal:
// ≤ 50 MiB). Startup code runs once, so it gains nothing from optimization;
// serving code is optimized as usual once resumeOptimization() is called.
// Must be the first import of main.ts so it runs before any bundled module body.
import { setFlagsFromString } from "node:v8";

// Only touch the flag when this process was not started with an explicit
// choice (--no-opt, --jitless, …): resuming must not override the operator.
const OWN_FLAGS = !process.execArgv.some((a) => /^--(no-)?(opt|turbofan|jitless|lite-mode)\b/.test(a));

if (OWN_FLAGS) setFlagsFromString("--no-opt --no-sparkplug");

/** Lets V8 optimize hot functions again; call once the agent is serving. */
export function resumeOptimization(): void {
  if (OWN_FLAGS) setFlagsFromString("--opt --sparkplug");
}
