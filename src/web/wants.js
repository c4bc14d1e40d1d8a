/**
 * What the tabs sharing one event stream want, as they tell it on their BroadcastChannel: one
 * module for the page (app.js) and the typed client (src/client/TabHub.ts), which share streams
 * the same way. Each want is kept with when it was last heard: a tab that stops saying (closed,
 * frozen) is forgotten after `forgetAfter` ms. After a change, `changed` runs once the changes stop
 * for 50 ms, so that tabs starting together join one opening of the stream.
 * @template W
 */
export class Wants {
  /** @type {Map<string, { want: W, seen: number }>} */
  #heard = new Map()
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer = undefined

  /** @param {number} forgetAfter @param {() => void} changed */
  constructor(forgetAfter, changed) {
    this.forgetAfter = forgetAfter
    this.changed = changed
  }

  /** @param {string} id @param {W} want */
  hear(id, want) {
    this.#heard.set(id, { want, seen: Date.now() })
    this.schedule()
  }

  /** @param {string} id */
  drop(id) {
    this.#heard.delete(id)
    this.schedule()
  }

  /** Runs `changed` 50 ms from now, unless something changes before. */
  schedule() {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(this.changed, 50)
  }

  /** Forgets every want, and any pending run of `changed`. */
  clear() {
    clearTimeout(this.#timer)
    this.#heard.clear()
  }

  /**
   * The wants heard lately, by id; those silent for longer than `forgetAfter` are forgotten
   * first, but for the ones `keep` names (this tab's own).
   * @param {(id: string) => boolean} keep
   * @returns {Map<string, W>}
   */
  current(keep) {
    const now = Date.now()
    /** @type {Map<string, W>} */
    const current = new Map()
    for (const [id, { seen, want }] of this.#heard) {
      if (!keep(id) && now - seen > this.forgetAfter) this.#heard.delete(id)
      else current.set(id, want)
    }
    return current
  }
}
