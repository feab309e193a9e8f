// NATS with nats.js 2.x against the local nats-server: request/reply (one muxed reply inbox per connection), and
// JetStream as the durable queue peer (publish with ack; a pull consumer that acks each message).
import { randomBytes } from 'node:crypto'
import { connect, createInbox, headers } from 'nats'
import { closedLoop, countLoop, monotonicMicros } from '../lib/measure.js'

/** Answers each request on `subject` with its own payload. */
export async function worker ({ natsUrl, subject }) {
  const nc = await connect({ servers: natsUrl })
  nc.subscribe(subject, { callback: (err, msg) => { if (err === null) msg.respond(msg.data) } })
  await nc.flush()
  return { close: () => nc.drain() }
}

export async function caller ({ natsUrl, subject }) {
  const nc = await connect({ servers: natsUrl })
  return {
    run ({ size, concurrency, warmupMs, durationMs }) {
      const payload = Buffer.alloc(size, 'x')
      return closedLoop({ call: () => nc.request(subject, payload, { timeout: 30_000 }), concurrency, warmupMs, durationMs })
    },
    close: () => nc.close(),
  }
}

/**
 * JetStream publishes, each awaited until the server acknowledged it as stored. `msgId`: each publish carries a
 * unique `Nats-Msg-Id` header (JetStream's deduplication, what a clustered fnbus gateway sends for the idempotency key
 * every SDK Async call has), of about that key's length.
 */
export async function jsPublisher ({ natsUrl, subject, msgId = false }) {
  const nc = await connect({ servers: natsUrl })
  const js = nc.jetstream()
  const prefix = `bench.${randomBytes(12).toString('base64url')}.`
  let n = 0
  return {
    run ({ size, concurrency, count, warmup }) {
      const payload = Buffer.alloc(size, 'x')
      const call = msgId ? () => js.publish(subject, payload, { msgID: prefix + String(n++) }) : () => js.publish(subject, payload)
      return countLoop({ call, concurrency, count, warmup })
    },
    close: () => nc.close(),
  }
}

/**
 * The same publishes without js.publish's machinery: `nc.publish` with a reply subject on one inbox subscription, the
 * PubAcks matched by its last token (what a clustered fnbus gateway does, src/cluster/acked-publisher.ts). Not a peer:
 * what the nats-server takes from a client that costs little. No timeouts (the loop bounds a run).
 */
export async function jsLeanPublisher ({ natsUrl, subject, msgId = false }) {
  const nc = await connect({ servers: natsUrl })
  const inbox = createInbox()
  const waiting = new Map()
  let n = 0
  nc.subscribe(`${inbox}.*`, {
    callback: (err, msg) => {
      if (err !== null) return
      const token = Number(msg.subject.slice(inbox.length + 1))
      const answer = waiting.get(token)
      waiting.delete(token)
      const ack = JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString('utf8'))
      if (ack.error !== undefined || typeof ack.seq !== 'number') answer?.reject(new Error(ack.error?.description ?? 'no PubAck'))
      else answer?.resolve(ack)
    },
  })
  await nc.flush()
  const prefix = `bench.${randomBytes(12).toString('base64url')}.`
  const publish = payload => new Promise((resolve, reject) => {
    const token = ++n
    waiting.set(token, { resolve, reject })
    let h
    if (msgId) {
      h = headers()
      h.set('Nats-Msg-Id', prefix + String(token))
    }
    nc.publish(subject, payload, { reply: `${inbox}.${token}`, headers: h })
  })
  return {
    run ({ size, concurrency, count, warmup }) {
      const payload = Buffer.alloc(size, 'x')
      return countLoop({ call: () => publish(payload), concurrency, count, warmup })
    },
    close: () => nc.close(),
  }
}

/** A pull consumer (`consume`) that acks each message; resolves with the rate once `total` were acked. */
export async function jsConsumer ({ natsUrl, stream, durable }) {
  const nc = await connect({ servers: natsUrl })
  const js = nc.jetstream()
  return {
    async drain ({ total, concurrency }) {
      const start = monotonicMicros()
      const consumer = await js.consumers.get(stream, durable)
      // at most `concurrency` messages buffered and unacked, as the fnbus worker's concurrency bounds its own
      const messages = await consumer.consume({ max_messages: concurrency })
      let acked = 0
      for await (const message of messages) {
        message.ack()
        if (++acked === total) break
      }
      const seconds = (monotonicMicros() - start) / 1e6
      await nc.flush()
      return { calls: total, seconds, rate: total / seconds, totalCalls: total }
    },
    close: () => nc.close(),
  }
}
