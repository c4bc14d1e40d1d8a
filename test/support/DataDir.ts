/** A DATA_DIR of its own for a service a test starts, removed with the scope. */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export const dataDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))
      // The embedded server runs as another user when the tests run as root.
      Fs.chmodSync(folder, 0o755)
      return folder
    }),
    (folder) => Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true }))
  )
