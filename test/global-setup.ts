// Before any test file, once: dist/ up to date with the sources
// (test/helpers/dist.ts), so that no two workers build it at once. Test
// controllers run compiled, as `npm start` and the container image run
// them (test/helpers/controller.ts), and their local agents run from the
// bundle, dist/agent.mjs, as a sandbox image runs them: ~1 s and ~0.6 s
// less per process start than compiling the TypeScript through tsx each
// time, in a suite that starts hundreds of them.
import { ensureDist } from "./helpers/dist.js";

export default function setup(): void {
  ensureDist();
}
