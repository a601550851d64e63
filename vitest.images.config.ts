// `npm run test:images`: the container images, built and run with podman.
// Apart from `npm test` (minutes, needs podman and runc): test/images/*.itest.ts.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/images/**/*.itest.ts"],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
