import { ConfigProvider, Layer } from "effect"
import { AppConfig } from "../../src/Config.js"

/** The service's settings as the environment `overrides` would give them, on a free local port. */
export const testConfig = (overrides: Record<string, string> = {}) =>
  AppConfig.layer.pipe(
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromMap(new Map(Object.entries({ HOST: "127.0.0.1", PORT: "0", ...overrides })))
      )
    )
  )
