// @ts-check
/**
 * The pollcast page: history of a channel from GET /messages, then live messages from
 * GET /events through the browser's own EventSource, which reconnects by itself with
 * Last-Event-ID. Message text is only ever set as text, never parsed as HTML.
 *
 * Where the service checks access, the page uses an access token, pasted in or given in the URL's
 * fragment (`#channel&token=…`, removed from the URL at once): as a Bearer header for the API, and
 * as a cookie only sent to /events for the EventSource, which cannot send headers.
 *
 * Tabs share one event stream. A browser opens at most six connections to one origin over
 * HTTP/1.1, and each open stream holds one: a seventh tab would see nothing and could not even
 * post. So the tabs of one origin that use the same token (or none) elect a leader with a Web Lock;
 * it alone holds an EventSource, for the union of the channels they show, and passes what it
 * receives to the others over a BroadcastChannel; each tab shows only its own channel. When the
 * leader closes or is frozen, the lock passes to another tab, which goes on from the newest id
 * passed on: tabs skip ids they have shown, so nothing is lost or shown twice. Tabs with another
 * token use another lock and channel, so none receives what its own token may not read. Where
 * these APIs are missing, each tab holds its own stream.
 */

/**
 * @typedef {{ id: string, channel: string, author: string, body: string, createdAt: string }} Message
 * @typedef {{ messages: Array<Message>, next: string | null, previous: string | null, lastEventId: string }} Page
 * @typedef {"connecting" | "live" | "reconnecting" | "offline" | "refused"} ConnectionState
 */

import { Wants } from "./wants.js"

const defaultChannel = "general"
const channelPattern = /^[A-Za-z0-9_.:-]{1,64}$/
const historySize = 100
const recentChannelsKey = "pollcast.channels"
const authorKey = "pollcast.author"
const tokenKey = "pollcast.token"
const tokenCookie = "pollcast_token"
const tokenPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
const element = (id, type) => {
  const found = document.getElementById(id)
  if (!(found instanceof type)) throw new Error(`#${id} is missing`)
  return found
}

const channelForm = element("channel-form", HTMLFormElement)
const channelInput = element("channel", HTMLInputElement)
const recentList = element("recent-channels", HTMLDataListElement)
const statusLine = element("status", HTMLElement)
const scroller = element("scroller", HTMLElement)
const list = element("messages", HTMLOListElement)
const empty = element("empty", HTMLElement)
const olderButton = element("older", HTMLButtonElement)
const compose = element("compose", HTMLFormElement)
const authorInput = element("author", HTMLInputElement)
const bodyInput = element("body", HTMLTextAreaElement)
const sendButton = element("send", HTMLButtonElement)
const errorLine = element("error", HTMLElement)
const identityLine = element("identity", HTMLElement)
const identityName = element("identity-name", HTMLElement)
const signOutButton = element("sign-out", HTMLButtonElement)
const tokenForm = element("token-form", HTMLFormElement)
const tokenPrompt = element("token-prompt", HTMLElement)
const tokenInput = element("token", HTMLInputElement)
const refusedLine = element("refused", HTMLElement)

/** What the page shows now. `generation` changes with the channel, so late answers are dropped. */
const state = {
  channel: defaultChannel,
  generation: 0,
  /** @type {EventSource | undefined} */
  source: undefined,
  /** The id of the newest message shown; ids sort as strings in delivery order. */
  newest: "",
  /** @type {string | null} */
  previous: null,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  retryTimer: undefined,
  /** When the last `reset` reloaded the channel, and how long the reload after it waited (ms). */
  lastReset: 0,
  resetDelay: 0,
  /** Whether the channel's messages are followed (its history is loaded, and it may be read). */
  following: false,
  /** @type {Array<Message> | undefined} messages received while the history loads */
  held: undefined
}

/** @param {ConnectionState} connection */
const showConnection = (connection) => {
  const labels = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline, retrying…",
    refused: "Not allowed"
  }
  statusLine.dataset.state = connection
  statusLine.textContent = labels[connection]
}

/** @param {string | undefined} text */
const showError = (text) => {
  errorLine.hidden = text === undefined
  errorLine.textContent = text ?? ""
}

/** @param {string} iso */
const formatTime = (iso) => {
  const date = new Date(iso)
  const sameDay = date.toDateString() === new Date().toDateString()
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
}

/** @param {Message} message */
const render = (message) => {
  const item = document.createElement("li")
  item.className = "message"
  item.dataset.id = message.id
  const meta = document.createElement("div")
  meta.className = "meta"
  const author = document.createElement("span")
  author.className = "author"
  author.textContent = message.author
  const time = document.createElement("time")
  time.dateTime = message.createdAt
  time.title = new Date(message.createdAt).toLocaleString()
  time.textContent = formatTime(message.createdAt)
  meta.append(author, time)
  const body = document.createElement("div")
  body.className = "body"
  body.textContent = message.body
  item.append(meta, body)
  return item
}

const nearBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80

/** Adds messages at the bottom, skipping any already shown; follows them if the reader was at the bottom. */
/** @param {ReadonlyArray<Message>} messages */
const appendMessages = (messages) => {
  const follow = nearBottom()
  for (const message of messages) {
    if (message.id <= state.newest) continue
    list.append(render(message))
    state.newest = message.id
  }
  empty.hidden = list.childElementCount > 0
  if (follow) scroller.scrollTop = scroller.scrollHeight
}

/** The service refused a request: 401 (a token is needed, or this one is not accepted) or 403. */
class AccessRefused extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

/** The access token in use, "" for none; kept for this tab only. */
let accessToken = sessionStorage.getItem(tokenKey) ?? ""

/** @returns {Record<string, string>} */
const authorization = () => (accessToken === "" ? {} : { authorization: `Bearer ${accessToken}` })

/**
 * The name a token posts under (`pollcast.author`, else `sub`), read only to show it: the
 * service verifies the token.
 * @param {string} token
 * @returns {string | undefined}
 */
const nameIn = (token) => {
  try {
    const payload = token.split(".")[1] ?? ""
    const bytes = Uint8Array.from(atob(payload.replace(/-/g, "+").replace(/_/g, "/")), (char) => char.charCodeAt(0))
    const claims = JSON.parse(new TextDecoder().decode(bytes))
    const name = claims?.pollcast?.author ?? claims?.sub
    return typeof name === "string" ? name : undefined
  } catch {
    return undefined
  }
}

const showIdentity = () => {
  const name = nameIn(accessToken)
  identityLine.hidden = accessToken === ""
  identityName.textContent = name === undefined ? "Signed in" : `Signed in as ${name}`
  // With a token, messages are stored under the token's name.
  authorInput.readOnly = accessToken !== ""
  authorInput.value = accessToken === "" ? localStorage.getItem(authorKey) ?? "" : name ?? ""
}

/** @param {string} token "" to sign out */
const useToken = (token) => {
  accessToken = token
  const secure = location.protocol === "https:" ? "; Secure" : ""
  if (token === "") {
    sessionStorage.removeItem(tokenKey)
    document.cookie = `${tokenCookie}=; Path=/events; Max-Age=0; SameSite=Strict${secure}`
  } else {
    sessionStorage.setItem(tokenKey, token)
    document.cookie = `${tokenCookie}=${token}; Path=/events; SameSite=Strict${secure}`
  }
  showIdentity()
}

/** @param {string} message */
const askForToken = (message) => {
  tokenPrompt.textContent = accessToken === ""
    ? `${message}. Paste your access token:`
    : `Your access token was not accepted: ${message}. Paste a new one:`
  tokenForm.hidden = false
  tokenInput.focus()
}

/** Says why the channel cannot be read; a token may help. @param {AccessRefused} refusal */
const showRefusal = (refusal) => {
  showConnection("refused")
  refusedLine.hidden = false
  refusedLine.textContent = refusal.status === 403
    ? `You may not read #${state.channel} with this token.`
    : `#${state.channel} needs an access token that may read it.`
  if (refusal.status === 401) askForToken(refusal.message.replace(/\.$/, ""))
}

/** @param {string} path */
const getJson = async (path) => {
  const response = await fetch(path, { headers: { accept: "application/json", ...authorization() } })
  const json = await response.json()
  if (response.status === 401 || response.status === 403) throw new AccessRefused(response.status, json.message)
  if (!response.ok) throw new Error(json.message ?? `${response.status} ${response.statusText}`)
  return json
}

/** @param {string} channel */
const rememberChannel = (channel) => {
  /** @type {Array<string>} */
  let recent = []
  try {
    recent = JSON.parse(localStorage.getItem(recentChannelsKey) ?? "[]")
  } catch {
    recent = []
  }
  recent = [channel, ...recent.filter((known) => known !== channel)].slice(0, 12)
  localStorage.setItem(recentChannelsKey, JSON.stringify(recent))
  recentList.replaceChildren(...recent.map((known) => Object.assign(document.createElement("option"), { value: known })))
}

/** A message from the event stream: shown if it belongs to the channel shown. @param {string} data */
const receiveMessage = (data) => {
  /** @type {Message} */
  const message = JSON.parse(data)
  if (message.channel !== state.channel) return
  if (state.held !== undefined) {
    // The history is still loading: shown after it. Bounded; the oldest, if any are dropped,
    // came before the history was read, so it has them.
    state.held.push(message)
    if (state.held.length > 1000) state.held.shift()
    return
  }
  appendMessages([message])
}

/**
 * The server could not resume from our position (the database was restored elsewhere, or the
 * messages after it have expired): what is shown may be wrong, so load the channel afresh.
 * A reset soon after the last one means reloading did not help: each such reload waits twice as
 * long as the one before (1 s up to a minute), so that the page never asks in a loop.
 * @param {number} generation
 */
const receiveReset = (generation) => {
  if (generation !== state.generation) return
  state.source?.close()
  const now = Date.now()
  state.resetDelay = now - state.lastReset < 60_000 ? Math.min(Math.max(state.resetDelay * 2, 1000), 60_000) : 0
  state.lastReset = now
  showConnection("reconnecting")
  clearTimeout(state.retryTimer)
  state.retryTimer = setTimeout(() => {
    if (generation === state.generation) void openChannel(state.channel)
  }, state.resetDelay)
}

/** Subscribes to the channel's events after `lastEventId`; the browser handles reconnection. */
/** @param {string} lastEventId */
const connect = (lastEventId) => {
  const generation = state.generation
  const url = `/events?channel=${encodeURIComponent(state.channel)}&lastEventId=${encodeURIComponent(lastEventId)}`
  const source = new EventSource(url)
  state.source = source
  source.addEventListener("open", () => showConnection("live"))
  source.addEventListener("message", (event) => {
    if (generation === state.generation) receiveMessage(event.data)
  })
  source.addEventListener("reset", () => receiveReset(generation))
  source.addEventListener("error", () => {
    if (generation !== state.generation) return
    if (source.readyState === EventSource.CONNECTING) {
      showConnection("reconnecting")
      return
    }
    // The browser gave up (an error status, say): start again from the newest message shown.
    showConnection("offline")
    source.close()
    clearTimeout(state.retryTimer)
    state.retryTimer = setTimeout(() => {
      if (generation === state.generation) void reconnect(generation, state.newest || lastEventId)
    }, 3000)
  })
}

/**
 * Follows the channel after `lastEventId` (where its history ends): through the tabs' shared
 * stream where the browser can share one, else with a stream of this tab's own.
 * @param {number} generation
 * @param {string} lastEventId
 */
const follow = (generation, lastEventId) => {
  const held = state.held ?? []
  state.held = undefined
  appendMessages(held)
  state.following = true
  if (tabs.shared()) tabs.want(generation, lastEventId)
  else connect(lastEventId)
}

/**
 * The tabs' shared stream (see the top of this file). Messages between tabs, over a
 * BroadcastChannel named after the token's group:
 * - `want` {tab, channel, after}: a tab shows `channel` and has everything up to `after`; sent
 *   when it starts following and every few seconds after; `channel: null` when it stops;
 * - `hello`: a new leader asks every tab to say what it wants;
 * - `event` {event, id, data}: what the leader's stream received;
 * - `status` {state, covered}: the leader's stream, and from which position it covers each channel.
 */
const tabs = (() => {
  const tab = Math.random().toString(36).slice(2) + Date.now().toString(36)
  const heartbeat = 4000
  const forgetAfter = 15_000
  const supported = typeof BroadcastChannel === "function" && navigator.locks !== undefined
  /** @type {BroadcastChannel | undefined} */
  let bus
  /** The group's name: tabs share only with tabs of the same token. */
  let group = ""
  /** @type {(() => void) | undefined} release the lock (as leader) */
  let release
  let leader = false
  /** The newest id the shared stream has passed on (ids sort in delivery order). */
  let position = ""
  /** What this tab follows: the generation of the channel, where its history ended, and since when it is covered. */
  let mine = { generation: -1, after: "", covered: false }
  /** @type {Wants<{ channel: string, after: string }>} what each tab wants, as the leader knows it */
  const wants = new Wants(forgetAfter, () => followWants())
  /** The leader's stream: the EventSource, its channels and from which position each is covered. */
  /** @type {EventSource | undefined} */
  let source
  /** @type {Map<string, string>} */
  let covered = new Map()
  let streamState = "connecting"
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let retryTimer

  /** @param {object} message */
  const post = (message) => bus?.postMessage(message)

  const announce = () => {
    const want = mine.generation === state.generation && state.following
      ? { tab, channel: state.channel, after: mine.covered && position > mine.after ? position : mine.after }
      : { tab, channel: null, after: "" }
    if (want.channel !== null) mine.after = want.after
    if (leader) heard(want)
    else post({ type: "want", ...want })
  }

  /** The leader's stream changed: every tab (this one too) learns what it covers. */
  const tellStatus = () => {
    const status = { type: "status", state: streamState, covered: Object.fromEntries(covered) }
    post(status)
    onStatus(status)
  }

  /** @param {{ state: string, covered: Record<string, string> }} status */
  const onStatus = (status) => {
    if (mine.generation !== state.generation || !state.following) return
    const from = status.covered[state.channel]
    mine.covered = status.state === "live" && from !== undefined && from <= mine.after
    if (mine.covered) showConnection("live")
    else if (status.state === "offline") {
      showConnection("offline")
      // The stream was refused: perhaps this tab's token may no longer read its channel.
      void checkAccess(state.generation)
    } else showConnection(status.state === "live" ? "connecting" : "reconnecting")
  }

  /** @param {number} generation */
  const checkAccess = async (generation) => {
    try {
      await getJson(`/messages?channel=${encodeURIComponent(state.channel)}&limit=1`)
    } catch (error) {
      if (generation === state.generation && error instanceof AccessRefused) {
        state.following = false
        announce()
        showRefusal(error)
      }
    }
  }

  /** @param {string} kind @param {string} id @param {string} data */
  const onEvent = (kind, id, data) => {
    if (id > position) position = id
    const followed = state.following && mine.generation === state.generation
    // While the history loads, messages are held (receiveMessage) to be shown after it.
    if (kind === "message" && (followed || state.held !== undefined)) receiveMessage(data)
    else if (kind === "reset" && followed) receiveReset(state.generation)
  }

  /**
   * Every tab keeps what the others want, so that a new leader knows at once.
   * @param {{ tab: string, channel: string | null, after: string }} want
   */
  const heard = (want) => {
    if (want.channel === null) wants.drop(want.tab)
    else wants.hear(want.tab, { channel: want.channel, after: want.after })
  }

  /** Opens the stream again when the channels wanted are not those covered, or a tab needs an earlier start. */
  const followWants = () => {
    if (!leader) return
    const current = [...wants.current((id) => id === tab).values()]
    const channels = [...new Set(current.map((want) => want.channel))].sort()
    // From the newest id passed on (or, before any, from where the tabs' histories end), earlier
    // if a tab needs it: replaying what a tab has already shown is harmless, it skips those ids.
    let from = position !== "" ? position : current.reduce((min, want) => (min === "" || want.after < min ? want.after : min), "")
    let same = source !== undefined && channels.length === covered.size
    for (const want of current) {
      const since = covered.get(want.channel)
      if (since === undefined || want.after < since) same = false
      if (since === undefined || want.after < since) from = from === "" || want.after < from ? want.after : from
    }
    if (same) return tellStatus()
    source?.close()
    source = undefined
    if (channels.length === 0) {
      covered = new Map()
      return
    }
    covered = new Map(channels.map((channel) => {
      const since = covered.get(channel)
      return [channel, since !== undefined && since <= from ? since : from]
    }))
    open(channels, from)
  }

  /** @param {Array<string>} channels @param {string} from */
  const open = (channels, from) => {
    clearTimeout(retryTimer)
    // The cookie is the browser's, not the tab's: set it again to this group's token.
    useToken(accessToken)
    const query = channels.map((channel) => `channel=${encodeURIComponent(channel)}`).join("&")
    const opened = new EventSource(`/events?${query}${from === "" ? "" : `&lastEventId=${encodeURIComponent(from)}`}`)
    source = opened
    streamState = "connecting"
    tellStatus()
    opened.addEventListener("open", () => {
      streamState = "live"
      tellStatus()
    })
    for (const kind of ["message", "reset"]) {
      opened.addEventListener(kind, (event) => {
        if (!(event instanceof MessageEvent) || source !== opened) return
        post({ type: "event", event: kind, id: event.lastEventId, data: event.data })
        onEvent(kind, event.lastEventId, event.data)
      })
    }
    opened.addEventListener("error", () => {
      if (source !== opened) return
      if (opened.readyState === EventSource.CONNECTING) {
        streamState = "reconnecting"
        return tellStatus()
      }
      opened.close()
      source = undefined
      streamState = "offline"
      tellStatus()
      retryTimer = setTimeout(() => {
        if (source === undefined) followWants()
      }, 3000)
    })
  }

  const lead = () =>
    new Promise((resolve) => {
      release = () => resolve(undefined)
      leader = true
      covered = new Map()
      post({ type: "hello" })
      announce()
    })

  const resign = () => {
    leader = false
    clearTimeout(retryTimer)
    source?.close()
    source = undefined
    covered = new Map()
    release?.()
    release = undefined
  }

  /** @param {string} token */
  const groupOf = async (token) => {
    if (token === "") return "anonymous"
    // A token's hash, so that the name does not reveal it; without crypto.subtle, no sharing.
    if (crypto.subtle === undefined) return ""
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))
    return Array.from(new Uint8Array(digest).slice(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("")
  }

  /** Joins the group of the token in use (leaving any other), and queues for its lock. */
  const join = async () => {
    if (!supported) return
    const next = await groupOf(accessToken)
    if (next === group && bus !== undefined) return
    resign()
    bus?.close()
    bus = undefined
    wants.clear()
    position = ""
    group = next
    if (group === "") return
    const joined = new BroadcastChannel(`pollcast.stream.${group}`)
    bus = joined
    joined.onmessage = (event) => {
      const message = event.data
      if (message.type === "event") onEvent(message.event, message.id, message.data)
      else if (message.type === "status") onStatus(message)
      else if (message.type === "hello") announce()
      else if (message.type === "want") heard(message)
    }
    requestLock()
  }

  const requestLock = () => {
    const name = `pollcast.stream.${group}`
    void navigator.locks.request(name, () => (group !== "" && `pollcast.stream.${group}` === name ? lead() : undefined))
  }

  let frozen = false
  // A frozen tab runs no code: the leader hands over first, and queues again once resumed.
  document.addEventListener("freeze", () => {
    frozen = true
    resign()
  })
  document.addEventListener("resume", () => {
    if (!frozen) return
    frozen = false
    if (group !== "") requestLock()
    announce()
    void catchUp(state.generation)
  })
  window.addEventListener("pagehide", () => {
    state.following = false
    announce()
  })
  // Back from the back-forward cache: it left the group on the way out.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) void openChannel(state.channel)
  })
  setInterval(() => {
    if (mine.generation === state.generation && state.following) announce()
    if (leader) followWants()
  }, heartbeat)

  return {
    join,
    /** Whether this tab follows its channel through the shared stream. */
    shared: () => bus !== undefined,
    /** @param {number} generation @param {string} after */
    want: (generation, after) => {
      mine = { generation, after, covered: false }
      showConnection("connecting")
      announce()
    },
    /** This tab follows nothing (it is loading another channel). */
    leave: () => {
      if (!state.following) return
      state.following = false
      announce()
    }
  }
})()

/**
 * Connects again after `lastEventId`, asking the API first whether the channel may still be read:
 * the browser's EventSource does not say why it gave up (an expired token, say).
 * @param {number} generation
 * @param {string} lastEventId
 */
const reconnect = async (generation, lastEventId) => {
  try {
    await getJson(`/messages?channel=${encodeURIComponent(state.channel)}&limit=1&after=${encodeURIComponent(lastEventId)}`)
  } catch (error) {
    if (generation !== state.generation) return
    if (error instanceof AccessRefused) return showRefusal(error)
  }
  if (generation === state.generation) follow(generation, lastEventId)
}

/**
 * After a freeze: what the shared stream passed on while this tab ran no code need not have reached
 * it (a browser may drop a frozen page's messages), so it reads what follows the newest message it
 * shows from the history, holding live messages meanwhile; ids already shown are skipped.
 * @param {number} generation
 */
const catchUp = async (generation) => {
  if (state.newest === "" || state.held !== undefined) return
  state.held = []
  try {
    let after = state.newest
    for (;;) {
      /** @type {Page} */
      const page = await getJson(
        `/messages?channel=${encodeURIComponent(state.channel)}&limit=${historySize}&after=${encodeURIComponent(after)}`
      )
      if (generation !== state.generation) return
      appendMessages(page.messages)
      if (page.next === null) break
      after = page.next
    }
  } catch {
    // Shown as it was; the stream goes on, and the next reload fills any gap.
  } finally {
    if (generation === state.generation) {
      const held = state.held ?? []
      state.held = undefined
      appendMessages(held)
    }
  }
}

/** With another token (or none): goes on from the newest message shown, so that nothing is missed. */
const resume = async () => {
  state.source?.close()
  state.source = undefined
  clearTimeout(state.retryTimer)
  // Another token: another group of tabs to share a stream with.
  tabs.leave()
  await tabs.join()
  refusedLine.hidden = true
  showError(undefined)
  if (state.newest === "") return openChannel(state.channel)
  showConnection("connecting")
  void reconnect(state.generation, state.newest)
}

/** Shows a channel: its latest history, then live messages from where the history ends. */
/** @param {string} channel */
const openChannel = async (channel) => {
  state.generation++
  const generation = state.generation
  state.source?.close()
  state.source = undefined
  tabs.leave()
  clearTimeout(state.retryTimer)
  state.channel = channel
  state.newest = ""
  state.previous = null
  state.held = []
  channelInput.value = channel
  list.replaceChildren()
  empty.hidden = true
  olderButton.hidden = true
  refusedLine.hidden = true
  showError(undefined)
  showConnection("connecting")
  history.replaceState(null, "", `#${encodeURIComponent(channel)}`)
  document.title = `#${channel} · pollcast`
  rememberChannel(channel)
  while (generation === state.generation) {
    try {
      /** @type {Page} */
      const page = await getJson(`/messages?channel=${encodeURIComponent(channel)}&limit=${historySize}`)
      if (generation !== state.generation) return
      appendMessages(page.messages)
      state.previous = page.previous
      olderButton.hidden = page.previous === null
      scroller.scrollTop = scroller.scrollHeight
      follow(generation, page.lastEventId)
      return
    } catch (error) {
      if (generation !== state.generation) return
      if (error instanceof AccessRefused) return showRefusal(error)
      showConnection("offline")
      await new Promise((resolve) => setTimeout(resolve, 3000))
    }
  }
}

const loadOlder = async () => {
  if (state.previous === null) return
  const generation = state.generation
  olderButton.disabled = true
  try {
    /** @type {Page} */
    const page = await getJson(
      `/messages?channel=${encodeURIComponent(state.channel)}&limit=${historySize}&before=${encodeURIComponent(state.previous)}`
    )
    if (generation !== state.generation) return
    const height = scroller.scrollHeight
    list.prepend(...page.messages.map(render))
    scroller.scrollTop += scroller.scrollHeight - height
    state.previous = page.previous
    olderButton.hidden = page.previous === null
  } catch (error) {
    showError(error instanceof Error ? error.message : String(error))
  } finally {
    olderButton.disabled = false
  }
}

const send = async () => {
  const body = bodyInput.value
  if (body.trim() === "") return
  // With a token the service takes the author from it.
  const author = accessToken === "" ? authorInput.value.trim() : ""
  if (accessToken === "") localStorage.setItem(authorKey, author)
  sendButton.disabled = true
  try {
    const response = await fetch("/messages", {
      method: "POST",
      headers: { "content-type": "application/json", ...authorization() },
      body: JSON.stringify(author === "" ? { channel: state.channel, body } : { channel: state.channel, author, body })
    })
    if (response.ok) {
      // The message comes back through the event stream, in its place in the order.
      bodyInput.value = ""
      resizeBody()
      showError(undefined)
    } else {
      const problem = await response.json().catch(() => ({}))
      showError(problem.message ?? `The server answered ${response.status}`)
      if (response.status === 401) askForToken(String(problem.message ?? "A token is needed").replace(/\.$/, ""))
    }
  } catch {
    showError("Could not reach the server; your message was not sent.")
  } finally {
    sendButton.disabled = false
    bodyInput.focus()
  }
}

const resizeBody = () => {
  bodyInput.style.height = "auto"
  bodyInput.style.height = `${bodyInput.scrollHeight + 2}px`
}

channelForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const channel = channelInput.value.trim()
  if (!channelPattern.test(channel)) {
    showError("A channel is 1 to 64 characters: letters, digits, _ . : -")
    return
  }
  if (channel !== state.channel || !state.following) void openChannel(channel)
})

compose.addEventListener("submit", (event) => {
  event.preventDefault()
  void send()
})

bodyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault()
    void send()
  }
})
bodyInput.addEventListener("input", resizeBody)
olderButton.addEventListener("click", () => void loadOlder())

/** The channel named by the URL's fragment, or "" when it names none (or is not even valid %-encoding). */
const channelFromHash = () => {
  try {
    return decodeURIComponent(location.hash.slice(1))
  } catch {
    return ""
  }
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault()
  const token = tokenInput.value.trim()
  if (!tokenPattern.test(token)) {
    tokenPrompt.textContent = "That is not an access token (three parts separated by dots). Paste it again:"
    return
  }
  tokenInput.value = ""
  tokenForm.hidden = true
  useToken(token)
  void resume()
})

signOutButton.addEventListener("click", () => {
  useToken("")
  void resume()
})

/**
 * Takes a token given in the fragment (`#channel&token=…`) and removes it from the URL, so that
 * it stays out of the history and of links copied from the address bar.
 */
const takeTokenFromFragment = () => {
  const parts = location.hash.slice(1).split("&")
  const given = parts.find((part) => part.startsWith("token="))
  if (given === undefined) return false
  const rest = parts.filter((part) => part !== given).join("&")
  history.replaceState(null, "", `${location.pathname}${location.search}${rest === "" ? "" : `#${rest}`}`)
  const token = given.slice("token=".length)
  if (tokenPattern.test(token)) useToken(token)
  return true
}

// Registered before the listener that follows the channel in the fragment, which then sees no token.
window.addEventListener("hashchange", () => {
  if (!takeTokenFromFragment()) return
  const channel = location.hash.slice(1)
  if (channel === "" || channel === encodeURIComponent(state.channel)) void resume()
})

window.addEventListener("hashchange", () => {
  const channel = channelFromHash()
  if (channelPattern.test(channel) && channel !== state.channel) void openChannel(channel)
})

authorInput.value = localStorage.getItem(authorKey) ?? ""
takeTokenFromFragment()
showIdentity()
const fromHash = channelFromHash()
void tabs.join().then(() => openChannel(channelPattern.test(fromHash) ? fromHash : defaultChannel))
