// @ts-check
/**
 * The pollcast page: history of a channel from GET /messages, then live messages from
 * GET /events through the browser's own EventSource, which reconnects by itself with
 * Last-Event-ID. Message text is only ever set as text, never parsed as HTML.
 */

/**
 * @typedef {{ id: string, channel: string, author: string, body: string, createdAt: string }} Message
 * @typedef {{ messages: Array<Message>, next: string | null, previous: string | null, lastEventId: string }} Page
 * @typedef {"connecting" | "live" | "reconnecting" | "offline"} ConnectionState
 */

const defaultChannel = "general"
const channelPattern = /^[A-Za-z0-9_.:-]{1,64}$/
const historySize = 100
const recentChannelsKey = "pollcast.channels"
const authorKey = "pollcast.author"

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
  retryTimer: undefined
}

/** @param {ConnectionState} connection */
const showConnection = (connection) => {
  const labels = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline, retrying…" }
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

/** @param {string} path */
const getJson = async (path) => {
  const response = await fetch(path, { headers: { accept: "application/json" } })
  const json = await response.json()
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
  source.addEventListener("reset", () => {
    if (generation === state.generation) void openChannel(state.channel)
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
      if (generation === state.generation) connect(state.newest || lastEventId)
    }, 3000)
  })
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
    } catch {
      if (generation !== state.generation) return
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
  const author = authorInput.value.trim()
  localStorage.setItem(authorKey, author)
  sendButton.disabled = true
  try {
    const response = await fetch("/messages", {
      method: "POST",
      headers: { "content-type": "application/json" },
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

window.addEventListener("hashchange", () => {
  const channel = channelFromHash()
  if (channelPattern.test(channel) && channel !== state.channel) void openChannel(channel)
})

authorInput.value = localStorage.getItem(authorKey) ?? ""
const fromHash = channelFromHash()
void openChannel(channelPattern.test(fromHash) ? fromHash : defaultChannel)
