#!/usr/bin/env node
// The web half of the build, after tsc: bundles the SDK for web pages, dist/browser.js → dist/browser/fnbus.js, one
// ESM file that `import { FCClient } from '/fnbus.js'` loads, connecting over `ws://` (the websocket plugin); and
// copies the dashboard's page next to its compiled plugin. The Node build is not touched: only this bundle swaps
// node-only modules for browser ones.
import { build } from 'esbuild'
import { cpSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

/**
 * Replaces what only Node has: the version read through `createRequire`, `node:events`, and the choice of transport
 * (a page has no sockets: MQTT.js over WebSocket carries every client).
 */
const browserModules = {
  name: 'fnbus-browser-modules',
  setup (build) {
    build.onResolve({ filter: /^node:events$/ }, args => build.resolve('events', { kind: args.kind, resolveDir: args.resolveDir }))
    build.onLoad({ filter: /[\\/]dist[\\/]version\.js$/ }, () => ({
      contents: `export const VERSION = ${JSON.stringify(version)}`,
      loader: 'js',
    }))
    build.onLoad({ filter: /[\\/]dist[\\/]client[\\/]choose-transport\.js$/ }, args => ({
      contents: "import { MqttTransport } from './mqtt-transport.js'\nexport function createTransport (options, listener) { return new MqttTransport(options, listener) }\n",
      loader: 'js',
      resolveDir: dirname(args.path),
    }))
    // anything else from node: would be a bug in the browser path: fail the build rather than ship it
    build.onResolve({ filter: /^node:/ }, args => ({ errors: [{ text: `${args.path} (imported by ${args.importer}) has no browser version` }] }))
  },
}

await build({
  absWorkingDir: root,
  entryPoints: ['dist/browser.js'],
  outfile: 'dist/browser/fnbus.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  inject: ['scripts/browser/globals.js'],
  plugins: [browserModules],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
})

// the dashboard's page is served as written (plain browser JavaScript, HTML, CSS): tsc leaves it out
cpSync(new URL('../plugins/dashboard/page', import.meta.url), new URL('../dist/plugins/dashboard/page', import.meta.url), { recursive: true })
