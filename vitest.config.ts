import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // dist/ (the compiled controller, the agent bundle) up to date before the first test: see the file.
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start real processes and servers; two cores, so a small pool.
    pool: "forks",
    maxWorkers: 2,
    teardownTimeout: 20_000,
  },
});
