// The example page: chat over pub/sub, a request to a cluster, and a stream consumed from
// its earliest offset, all through the local node's relay over WebSocket. The relay is the
// page's own host (a page served by `plexus node --relay-ws-static examples/web`), or the
// one named by ?relay=ws://127.0.0.1:PORT/ (the node must allow this page's origin:
// --relay-ws-origin). `window.app` exposes the same actions and what happened, for tests.
import { connectRelay } from './plexus-relay.js'

const $ = (id) => document.getElementById(id)
const text = (bytes) => new TextDecoder().decode(bytes)
const relay = new URLSearchParams(location.search).get('relay') ?? undefined

const app = {
  state: 'connecting',
  error: undefined,
  chat: [],
  replies: [],
  stream: [],
  client: undefined,
  async sendChat(message) {
    await app.client.publish('chat.web', message)
  },
  async request(cluster, data) {
    const reply = text(await app.client.request(cluster, data, { timeout: 5000 }))
    app.replies.push(reply)
    $('reply').textContent = reply
    return reply
  },
  async consume(stream, count) {
    const got = []
    for await (const m of app.client.consume(stream, { from: 'earliest' })) {
      const line = `${m.partition}/${m.offset} ${m.topic}: ${text(m.data)}`
      app.stream.push(line)
      got.push(line)
      add('stream-messages', line)
      if (count !== undefined && got.length >= count) break
    }
    return got
  },
}
window.app = app

function add(list, line) {
  const li = document.createElement('li')
  li.textContent = line
  $(list).append(li)
}

function show(state, detail) {
  app.state = state
  $('state').textContent = detail ? `${state}: ${detail}` : state
  $('state').className = state
}

try {
  // reconnect: a restarted node is found again; the chat subscription comes back by itself.
  const reconnect = {
    onState: (state, err) => show(state, err ? err.message : `node ${app.client?.id}`),
  }
  app.client = await connectRelay({
    ...(relay ? { url: relay } : {}),
    clientName: 'plexus-web-example',
    reconnect,
  })
  show('connected', `node ${app.client.id}`)
  const sub = app.client.subscribe('chat.>', (m) => {
    const line = `${m.from.slice(-6)}: ${text(m.data)}`
    app.chat.push(text(m.data))
    add('chat', line)
  })
  await sub.ready
  app.subscribed = true
} catch (err) {
  app.error = `${err.name}: ${err.message}`
  show('error', app.error)
}

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault()
  app.sendChat($('chat-text').value).catch((err) => add('chat', `error: ${err.message}`))
  $('chat-text').value = ''
})
$('req-form').addEventListener('submit', (e) => {
  e.preventDefault()
  app.request($('req-cluster').value, $('req-data').value).catch((err) => {
    $('reply').textContent = `${err.name}: ${err.message}`
  })
})
$('consume-form').addEventListener('submit', (e) => {
  e.preventDefault()
  app.consume($('stream').value).catch((err) => add('stream-messages', `${err.name}: ${err.message}`))
})
