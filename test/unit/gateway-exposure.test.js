// The exposure rule, without a gateway: no listener beyond loopback while anonymous clients are accepted by default.
import assert from 'node:assert/strict'
import test from 'node:test'
import { checkExposure, refuseAnonymousExposure } from '../../dist/gateway/exposure.js'
import { isLoopback } from '../../dist/util/loopback.js'

/** @import { FunctionBus } from '../../dist/index.js' */

// the rule reads no more of the bus than whether its authenticator admits anonymous clients
const anonymousBus = /** @type {FunctionBus} */ (/** @type {unknown} */ ({ authenticator: { anonymousAllowed: true } }))
const identityBus = /** @type {FunctionBus} */ (/** @type {unknown} */ ({ authenticator: { anonymousAllowed: false } }))

test('loopback: 127.0.0.0/8, ::1 (also written out or IPv4-mapped), localhost', () => {
  for (const host of ['127.0.0.1', '127.9.9.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost']) assert.equal(isLoopback(host), true, host)
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com']) assert.equal(isLoopback(host), false, host)
})

test('beyond loopback with anonymous clients by default: refused, naming the setting; an identity or allowAnonymous lets it be', () => {
  assert.throws(() => refuseAnonymousExposure('0.0.0.0', 'http.host', 'reach the HTTP port', {}, anonymousBus),
    { code: 'FNBUS_CONFIG_INVALID', message: /^http\.host 0\.0\.0\.0 is reachable beyond this machine.*could reach the HTTP port/ })
  refuseAnonymousExposure('127.0.0.1', 'host', 'invoke every function', {}, anonymousBus)
  refuseAnonymousExposure('0.0.0.0', 'host', 'invoke every function', {}, identityBus)
  refuseAnonymousExposure('0.0.0.0', 'host', 'invoke every function', { allowAnonymous: true }, anonymousBus)
})

test('the MQTT listener beyond loopback without TLS: a warning', () => {
  const warnings = []
  const logger = { debug () {}, info () {}, error () {}, warn: (fields, message) => { warnings.push(message) } }
  checkExposure('0.0.0.0', {}, identityBus, logger)
  checkExposure('0.0.0.0', { tls: { cert: 'c', key: 'k' } }, identityBus, logger)
  checkExposure('127.0.0.1', {}, identityBus, logger)
  assert.deepEqual(warnings, ['listening beyond loopback without TLS: passwords and payloads cross the network in clear'])
})
