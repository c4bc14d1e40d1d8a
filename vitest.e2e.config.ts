import { defineConfig } from "vitest/config"

// End-to-end tests of the web page in Debian's Chromium (`npm run test:e2e`); kept apart so that
// `npm test` runs on a machine without a browser.
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false
  }
})
