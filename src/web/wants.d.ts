/** See wants.js: what the tabs sharing one event stream want. */
export declare class Wants<W> {
  constructor(forgetAfter: number, changed: () => void)
  readonly forgetAfter: number
  readonly changed: () => void
  hear(id: string, want: W): void
  drop(id: string): void
  schedule(): void
  clear(): void
  current(keep: (id: string) => boolean): Map<string, W>
}
