/** Resident memory and CPU time of a process, read from /proc (Linux). */
import * as Fs from "node:fs"

const clockTicksPerSecond = 100

/** Resident set size in bytes. */
export const rss = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? NaN : Number(match[1]) * 1024
}

/** User plus system CPU time of a process (all its threads), or of one thread, in seconds. */
export const cpuSeconds = (pid: number, thread?: number): number => {
  const stat = Fs.readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8")
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond
}

export const machine = () => {
  const cpuinfo = Fs.readFileSync("/proc/cpuinfo", "utf8")
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? "unknown CPU"
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length
  const memoryKb = Number(/MemTotal:\s+(\d+)/.exec(Fs.readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0)
  return { cpu: model, cores, memoryGiB: Math.round(memoryKb / 1024 / 1024), node: process.version }
}
