// The help text is generated from the same command data as the parser: this holds the two together, and the
// command line to what the contract (docs/design.md) and the CLI reference promise.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { COMMAND_LOADERS, loadCommands } from '../../dist/cli/main.js'
import { commandHelp, mainHelp, optionLabel, parseArgsConfig } from '../../dist/cli/spec.js'
import { defined } from '../helpers.js'

const PROMISED = {
  start: ['config', 'port', 'host', 'data', 'watch', 'plugin', 'socket', 'memory', 'allow-anonymous', 'http-port', 'log-level', 'log-format', 'cluster', 'gateway-name', 'help'],
  run: ['service', 'function', 'url', 'ca', 'username', 'concurrency', 'log-level', 'log-format', 'help'],
  invoke: ['payload', 'payload-file', 'async', 'context', 'timeout', 'wait-for-worker', 'url', 'ca', 'username', 'json', 'help'],
  publish: ['payload', 'qos', 'retain', 'url', 'ca', 'username', 'help'],
  subscribe: ['json', 'count', 'qos', 'url', 'ca', 'username', 'help'],
  queue: ['all', 'dead', 'limit', 'json', 'url', 'ca', 'username', 'help'],
  status: ['json', 'url', 'ca', 'username', 'help'],
  identity: ['password-stdin', 'force', 'file', 'config', 'json', 'help'],
  init: ['dir', 'esm', 'config', 'help'],
  restart: ['url', 'ca', 'username', 'help'],
}

const COMMANDS = await loadCommands()

test('the registered commands are the promised ones, each with the promised options', () => {
  assert.deepEqual(COMMANDS.map(c => c.name), Object.keys(PROMISED))
  // each loader loads the command it is listed under
  assert.deepEqual(COMMAND_LOADERS.map(([name]) => name), Object.keys(PROMISED))
  for (const command of COMMANDS) {
    assert.deepEqual(Object.keys(command.options).sort(), [...PROMISED[command.name]].sort(), command.name)
  }
})

test('fnbus --help lists every command with its summary', () => {
  const help = mainHelp(COMMANDS, '9.9.9')
  for (const command of COMMANDS) assert.match(help, new RegExp(`^  ${command.name} +${escape(command.summary)}$`, 'm'))
  assert.match(help, /--version/)
  assert.match(help, /FNBUS_URL/)
})

test("each command's help shows its usage, arguments and every option the parser accepts, with its description", () => {
  for (const command of COMMANDS) {
    const help = commandHelp(command)
    const parser = defined(parseArgsConfig(command).options)
    assert.deepEqual(Object.keys(parser), Object.keys(command.options), `${command.name}: parser and spec agree`)
    assert.ok(help.startsWith(`Usage: fnbus ${command.name}`), help)
    for (const argument of command.arguments) assert.match(help, new RegExp(`^  ${escape(argument.name)} +${escape(argument.description)}$`, 'm'))
    for (const [name, option] of Object.entries(command.options)) {
      assert.equal(parser[name].type, option.type, `${command.name} --${name}`)
      assert.equal(parser[name].short, option.short, `${command.name} --${name}`)
      assert.match(help, new RegExp(`^  ${escape(optionLabel(name, option))} +${escape(option.description)}$`, 'm'), `${command.name} --${name}`)
    }
    // every option listed in the help is one the parser knows
    const listed = [...help.matchAll(/^ {2}(?:-\w, | {4})--([\w-]+)/gm)].map(m => m[1])
    assert.deepEqual(listed.sort(), Object.keys(parser).sort(), command.name)
  }
})

test('every command has --help; every command that talks to a gateway has --url and --ca', () => {
  for (const command of COMMANDS) {
    assert.equal(command.options.help.short, 'h')
    if (command.name === 'start' || command.name === 'identity' || command.name === 'init') continue
    assert.match(command.options.url.description, /FNBUS_URL/)
    assert.match(command.options.ca.description, /FNBUS_CA/)
  }
})

function escape (text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
