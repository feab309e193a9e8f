// Answers with its payload.
'use strict'

module.exports.handler = async event => event
