// @ts-check
/**
 * The pollcast page: history of a channel from GET /messages, then live messages from
 * GET /events through the browser's own EventSource, which reconnects by itself with
 * Last-Event-ID. Message text is only ever set as text, never parsed as HTML.
 *
 * Where the service checks access, the page uses an access token, pasted in or given in the URL's
 * fragment (`#channel&token=…`, removed from the URL at once): as a Bearer header for the API, and
 * as a cookie only sent to /events for the EventSource, which cannot send headers.
 */

/**
 * @typedef {{ id: string, channel: string, author: string, body: string, createdAt: string }} Message
 * @typedef {{ messages: Array<Message>, next: string | null, previous: string | null, lastEventId: string }} Page
 * @typedef {"connecting" | "live" | "reconnecting" | "offline" | "refused"} ConnectionState
 */

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
  resetDelay: 0
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

/** Subscribes to the channel's events after `lastEventId`; the browser handles reconnection. */
/** @param {string} lastEventId */
const connect = (lastEventId) => {
  const generation = state.generation
  const url = `/events?channel=${encodeURIComponent(state.channel)}&lastEventId=${encodeURIComponent(lastEventId)}`
  const source = new EventSource(url)
  state.source = source
  source.addEventListener("open", () => showConnection("live"))
  source.addEventListener("message", (event) => {
    if (generation !== state.generation) return
    appendMessages([JSON.parse(event.data)])
  })
  // The server could not resume from our position (the database was restored elsewhere, or the
  // messages after it have expired): what is shown may be wrong, so load the channel afresh.
  // A reset soon after the last one means reloading did not help: each such reload waits twice as
  // long as the one before (1 s up to a minute), so that the page never asks in a loop.
  source.addEventListener("reset", () => {
    if (generation !== state.generation) return
    source.close()
    const now = Date.now()
    state.resetDelay = now - state.lastReset < 60_000 ? Math.min(Math.max(state.resetDelay * 2, 1000), 60_000) : 0
    state.lastReset = now
    showConnection("reconnecting")
    clearTimeout(state.retryTimer)
    state.retryTimer = setTimeout(() => {
      if (generation === state.generation) void openChannel(state.channel)
    }, state.resetDelay)
  })
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
  if (generation === state.generation) connect(lastEventId)
}

/** With another token (or none): goes on from the newest message shown, so that nothing is missed. */
const resume = () => {
  state.source?.close()
  clearTimeout(state.retryTimer)
  refusedLine.hidden = true
  showError(undefined)
  if (state.newest === "") return void openChannel(state.channel)
  showConnection("connecting")
  void reconnect(state.generation, state.newest)
}

/** Shows a channel: its latest history, then live messages from where the history ends. */
/** @param {string} channel */
const openChannel = async (channel) => {
  state.generation++
  const generation = state.generation
  state.source?.close()
  clearTimeout(state.retryTimer)
  state.channel = channel
  state.newest = ""
  state.previous = null
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
      connect(page.lastEventId)
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
  if (channel !== state.channel || state.source === undefined) void openChannel(channel)
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
  resume()
})

signOutButton.addEventListener("click", () => {
  useToken("")
  resume()
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
  if (channel === "" || channel === encodeURIComponent(state.channel)) resume()
})

window.addEventListener("hashchange", () => {
  const channel = channelFromHash()
  if (channelPattern.test(channel) && channel !== state.channel) void openChannel(channel)
})

authorInput.value = localStorage.getItem(authorKey) ?? ""
takeTokenFromFragment()
showIdentity()
const fromHash = channelFromHash()
void openChannel(channelPattern.test(fromHash) ? fromHash : defaultChannel)
