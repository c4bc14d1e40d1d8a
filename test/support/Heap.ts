/**
 * The live heap, measured after full garbage collections: for tests that a flood leaves nothing
 * behind. `gc` is exposed at run time, so no test runner flag is needed.
 */
import * as V8 from "node:v8"
import * as Vm from "node:vm"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

export const liveHeapBytes = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

export const megabytes = (bytes: number) => bytes / 1024 / 1024

/** Bytes held by live ArrayBuffers (Node's Buffers among them), measured after full collections. */
export const liveArrayBufferBytes = () => {
  gc()
  gc()
  return process.memoryUsage().arrayBuffers
}
