/**
 * A small writer of self-contained SVG charts (the bench's and the soak's, for docs/): elements
 * are added in drawing order, coordinates rounded to a tenth, text escaped.
 */
import * as Fs from "node:fs"

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;")
const at = (value: number) => String(Math.round(value * 10) / 10)

export class Svg {
  private readonly parts: Array<string> = []

  constructor(readonly width: number, readonly height: number) {}

  text(x: number, y: number, content: string, attributes = "") {
    this.parts.push(`<text x="${at(x)}" y="${at(y)}" ${attributes}>${escape(content)}</text>`)
  }

  line(x1: number, x2: number, y1: number, y2: number, attributes: string) {
    this.parts.push(`<line x1="${at(x1)}" x2="${at(x2)}" y1="${at(y1)}" y2="${at(y2)}" ${attributes}/>`)
  }

  /** A rectangle, with a tooltip if `title` is given. */
  rect(x: number, y: number, width: number, height: number, attributes: string, title?: string) {
    const open = `<rect x="${at(x)}" y="${at(y)}" width="${at(width)}" height="${at(height)}" ${attributes}`
    this.parts.push(title === undefined ? `${open}/>` : `${open}><title>${escape(title)}</title></rect>`)
  }

  /** A line through `points`, with a dot on each if `dots`. */
  polyline(points: ReadonlyArray<readonly [number, number]>, color: string, options: { width: number; dash?: string; dots?: boolean }) {
    const dash = options.dash === undefined ? "" : ` stroke-dasharray="${options.dash}"`
    this.parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="${options.width}"${dash} points="${points.map(([x, y]) => `${at(x)},${at(y)}`).join(" ")}"/>`
    )
    if (options.dots === true) for (const [x, y] of points) this.parts.push(`<circle cx="${at(x)}" cy="${at(y)}" r="3" fill="${color}"/>`)
  }

  /** Writes the chart, on a white background. */
  write(file: string) {
    Fs.writeFileSync(
      file,
      `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}" font-family="system-ui, sans-serif" font-size="13">
<rect width="${this.width}" height="${this.height}" fill="#ffffff"/>
${this.parts.join("\n")}
</svg>
`
    )
  }
}
