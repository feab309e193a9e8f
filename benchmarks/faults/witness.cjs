// The fault script's Async function: a witness of every delivery across processes. It appends the invocation's
// requestId to the file WITNESS_FILE names (a line each), then answers. A gateway killed between the append and
// the acknowledgement makes a duplicate (allowed: at least once); one killed before the append, a redelivery.
'use strict'
const { appendFileSync } = require('node:fs')

module.exports.handler = function (event, context, callback) {
  setTimeout(() => {
    appendFileSync(String(process.env.WITNESS_FILE), context.requestId + '\n')
    callback(null, 'seen')
  }, Number(event) || 0)
}
