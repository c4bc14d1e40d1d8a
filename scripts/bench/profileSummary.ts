/**
 * Summarises a V8 .cpuprofile (from --cpu-prof): self time by function and by package, the
 * biggest first. Run: node --import tsx scripts/bench/profileSummary.ts FILE.cpuprofile [rows]
 */
import * as Fs from "node:fs"
import * as Url from "node:url"
import { root } from "../support/ServiceProcess.js"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

const [file, rowsArgument, fromArgument, toArgument] = process.argv.slice(2)
const profile = JSON.parse(Fs.readFileSync(file!, "utf8")) as { nodes: Array<Node>; samples: Array<number>; timeDeltas: Array<number> }
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const self = new Map<number, number>()
// Optionally only the samples between FROM and TO seconds after the profile began.
const from = Number(fromArgument ?? 0) * 1e6
const to = toArgument === undefined ? Infinity : Number(toArgument) * 1e6
let elapsed = 0
profile.samples.forEach((id, index) => {
  elapsed += profile.timeDeltas[index] ?? 0
  if (elapsed >= from && elapsed <= to) self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0))
})
const total = [...self.values()].reduce((sum, value) => sum + value, 0)

const packageOf = (url: string) => {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  return match?.[1] ?? (url === "" ? "(native/GC)" : url.startsWith("node:") ? "node" : url.replace(`${Url.pathToFileURL(root).href}/`, ""))
}
const functions = new Map<string, number>()
const packages = new Map<string, number>()
for (const [id, micros] of self) {
  const { functionName, lineNumber, url } = byId.get(id)!.callFrame
  const key = `${functionName || "(anonymous)"} ${url.replace(/^.*node_modules\//, "")}:${lineNumber + 1}`
  functions.set(key, (functions.get(key) ?? 0) + micros)
  packages.set(packageOf(url), (packages.get(packageOf(url)) ?? 0) + micros)
}
const show = (title: string, entries: Map<string, number>, rows: number) => {
  console.log(`\n${title} (total ${(total / 1e6).toFixed(2)} s)`)
  for (const [key, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    console.log(`${((micros / total) * 100).toFixed(1).padStart(5)}%  ${(micros / 1e3).toFixed(0).padStart(7)} ms  ${key}`)
  }
}
show("self time by package", packages, 15)
show("self time by function", functions, Number(rowsArgument ?? 30))
