import { existsSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CONFIG_FILE_NAME, loadConfig } from '../../config.js'
import { configError } from '../../errors.js'
import { ExitCode, HELP_OPTION, stringOption, UsageError, type CommandSpec, type Io, type ParsedArgs, functionArgument } from '../spec.js'

export const initCommand: CommandSpec = {
  name: 'init',
  summary: 'Scaffold a function: its module, and its entry in the configuration.',
  description: [
    'Writes a function module in Link IoT Edge\'s form (handler(event, context, callback)) to --dir',
    '(./functions/SERVICE-FUNCTION.cjs by default; --esm writes an async ES module handler instead), and adds',
    'it to fnbus.config.json (--config names another; a missing file is created), so that `fnbus start`',
    'supervises it. Refuses to overwrite a module or to list a function twice.',
  ].join('\n'),
  arguments: [{ name: 'SERVICE/FUNCTION', description: 'The function to create, e.g. Plant/reader.', required: true }],
  options: {
    dir: { type: 'string', value: 'DIR', description: 'Where the module goes. Default: ./functions.' },
    esm: { type: 'boolean', description: 'An ES module with an async handler (.mjs) instead of CommonJS.' },
    config: { type: 'string', value: 'FILE', description: 'The configuration to add it to. Default: ./fnbus.config.json.' },
    ...HELP_OPTION,
  },
  run: init,
}

const CALLBACK_TEMPLATE = (name: string): string => `'use strict'
// ${name}: a function for fnbus, in Link IoT Edge's form. \`event\` is the payload as it was sent (a string stays a
// string, a Buffer a Buffer); \`context\` holds requestId, invokerContext, serviceName, functionName, invocationType
// and deadline. Call \`callback(err)\` to fail (a "Handled" function error), \`callback(null, result)\` to answer.
// To call other functions or publish events: const { FCClient } = require('fnbus'); const fc = new FCClient()

exports.handler = function (event, context, callback) {
  callback(null, \`\${context.functionName} got: \${event}\`)
}
`

const ESM_TEMPLATE = (name: string): string => `// ${name}: a function for fnbus. \`event\` is the payload as it was sent (a string stays a string, a Buffer a
// Buffer); \`context\` holds requestId, invokerContext, serviceName, functionName, invocationType and deadline.
// Return the answer; a thrown error is an "Unhandled" function error.
// To call other functions or publish events: import { FCClient } from 'fnbus'; const fc = new FCClient()

export async function handler (event, context) {
  return \`\${context.functionName} got: \${event}\`
}
`

/** The configuration's JSON Schema in this package (`fnbus/schema.json`). */
const SCHEMA_FILE = fileURLToPath(new URL('../../../schema/fnbus.config.schema.json', import.meta.url))

/** `to` relative to the directory `from`, as a path a JSON file can name: `./x`, `../x`. */
function relativePath (from: string, to: string): string {
  const path = relative(from, to).split(sep).join('/')
  return path.startsWith('.') ? path : './' + path
}

async function init ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const fn = functionArgument(positionals[0] as string)
  const esm = values.esm === true
  const moduleFile = resolve(io.cwd, stringOption(values, 'dir') ?? 'functions', `${fn.serviceName}-${fn.functionName}.${esm ? 'mjs' : 'cjs'}`)
  const configFile = resolve(io.cwd, stringOption(values, 'config') ?? CONFIG_FILE_NAME)
  // the configuration is validated as `fnbus start` would, before anything is written
  const config = existsSync(configFile) ? loadConfig(configFile, io.cwd) : undefined
  if (config?.functions.some(entry => entry.name === fn.name) === true) {
    throw configError(`${configFile}: ${fn.name} is listed already`)
  }
  if (existsSync(moduleFile)) throw new UsageError(`${moduleFile} exists already; remove it or give another --dir`)
  // the file as written, not as validated: its keys and their order stay the user's
  // a new file points editors at the schema this fnbus validates with: completion, and errors as you type
  const raw = config === undefined
    ? { $schema: relativePath(dirname(configFile), SCHEMA_FILE) }
    : JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>
  const functions = Array.isArray(raw.functions) ? raw.functions : []
  const module = relativePath(dirname(configFile), moduleFile)
  raw.functions = [...functions, { service: fn.serviceName, function: fn.functionName, module }]
  await mkdir(dirname(moduleFile), { recursive: true })
  await writeFile(moduleFile, esm ? ESM_TEMPLATE(fn.name) : CALLBACK_TEMPLATE(fn.name), { flag: 'wx' })
  await writeFile(configFile, JSON.stringify(raw, null, 2) + '\n')
  io.stdout.write([
    `created ${relative(io.cwd, moduleFile) || moduleFile}`,
    `${config === undefined ? 'created' : 'updated'} ${relative(io.cwd, configFile) || configFile}: ${fn.name} → ${module}`,
    '',
    'next:',
    '  fnbus start --watch                     # runs it, and restarts it when you save it',
    `  fnbus invoke ${fn.name} --payload hi`,
    '',
  ].join('\n'))
  return ExitCode.Ok
}
