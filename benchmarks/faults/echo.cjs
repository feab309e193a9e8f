// The fault script's Sync function: answers which gateway ran it (GATEWAY_NAME) and the payload it got.
'use strict'

module.exports.handler = function (event, context, callback) {
  callback(null, { gateway: process.env.GATEWAY_NAME, echo: event })
}
