/** The scripts' command-line options: `--name value`. */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** The value after `--name` on the command line, if given. */
export const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? undefined : process.argv[index + 1]
}

/** The number after `--name`, or `fallback`. */
export const numberArgument = (name: string, fallback: number): number => {
  const given = argument(name)
  return given === undefined ? fallback : Number(given)
}

/** The folder after `--name`, which must hold a checkout of pollcast built with `npm run build`. */
export const checkoutArgument = (name: string): string | undefined => {
  const given = argument(name)
  if (given === undefined) return undefined
  const directory = Path.resolve(given)
  if (!Fs.existsSync(Path.join(directory, "dist/main.js"))) {
    throw new Error(`--${name} needs a checkout of pollcast built with npm run build`)
  }
  return directory
}
