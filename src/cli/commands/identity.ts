import { resolve } from 'node:path'
import { identitiesFileOf, loadConfig } from '../../config.js'
import { FnbusError } from '../../errors.js'
import {
  clientIdStem, generateSecret, hashSecret, identityNameError, isValidIdentityName, readIdentitiesFile, writeIdentitiesFile,
} from '../../security/credentials.js'
import { toJson } from '../output.js'
import { ExitCode, HELP_OPTION, readAll, stringOption, UsageError, type CommandSpec, type Io, type ParsedArgs } from '../spec.js'

const ACTIONS = ['add', 'rm', 'ls'] as const
type Action = typeof ACTIONS[number]

export const identityCommand: CommandSpec = {
  name: 'identity',
  summary: 'Create, remove and list the identities clients authenticate as.',
  description: [
    'Actions:',
    '  add NAME   create an identity (or, with --force, give it a new secret) and print its secret, once',
    '  rm NAME    remove an identity',
    '  ls         list the identities',
    'NAME is a name ([a-zA-Z][\\w-]{0,127}) or a function\'s name (Service/function) for its external workers.',
    'Only a scrypt hash of each secret is stored, in the identities file: the one the configuration names, else',
    'fnbus.identities.json beside it (or in the working directory). A running gateway reads it again when it',
    'changes. Clients connect with FNBUS_USERNAME=NAME and FNBUS_PASSWORD=SECRET.',
  ].join('\n'),
  arguments: [
    { name: 'ACTION', description: `One of ${ACTIONS.join(', ')}.`, required: true },
    { name: 'NAME', description: 'The identity (add, rm).', required: false },
  ],
  options: {
    'password-stdin': { type: 'boolean', description: 'add: read the secret from stdin instead of generating one.' },
    force: { type: 'boolean', description: 'add: replace the secret of an identity that exists.' },
    file: { type: 'string', value: 'FILE', description: 'The identities file. Default: as fnbus start finds it.' },
    config: { type: 'string', value: 'FILE', description: 'Configuration file that names the identities file. Default: ./fnbus.config.json if present.' },
    json: { type: 'boolean', description: 'ls: print the identities as JSON.' },
    ...HELP_OPTION,
  },
  run: identity,
}

async function identity ({ values, positionals }: ParsedArgs, io: Io): Promise<number> {
  const action = positionals[0] as Action
  if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown action ${JSON.stringify(action)}; one of ${ACTIONS.join(', ')}`)
  const name = positionals[1]
  if (action === 'ls') {
    if (name !== undefined) throw new UsageError('ls takes no NAME')
  } else {
    if (name === undefined) throw new UsageError(`${action} needs the NAME of the identity`)
    if (!isValidIdentityName(name)) throw new UsageError(identityNameError(name))
  }
  if (action !== 'add' && (values['password-stdin'] === true || values.force === true)) throw new UsageError('--password-stdin and --force go with add')
  const file = identitiesFile(values, io)
  const table = { ...await readIdentitiesFile(file, true) }

  switch (action) {
    case 'ls': {
      const rows = Object.entries(table).map(([identityName, entry]) => ({ name: identityName, created: entry.created }))
      if (values.json === true) io.stdout.write(toJson(rows) + '\n')
      else for (const row of rows) io.stdout.write(`${row.name}\t${row.created ?? ''}\n`)
      return ExitCode.Ok
    }
    case 'rm': {
      const identityName = name as string
      if (!Object.hasOwn(table, identityName)) throw new FnbusError('FNBUS_INVALID_ARGUMENT', `${file} has no identity ${identityName}`)
      delete table[identityName]
      await writeIdentitiesFile(file, table)
      io.stderr.write(`fnbus: identity ${identityName} removed from ${file}; its connections stay up until they end\n`)
      return ExitCode.Ok
    }
    case 'add': {
      const identityName = name as string
      if (Object.hasOwn(table, identityName) && values.force !== true) {
        throw new FnbusError('FNBUS_INVALID_ARGUMENT', `${file} has an identity ${identityName} already; --force gives it a new secret`)
      }
      const given = values['password-stdin'] === true
      const secret = given ? secretFromStdin(await readAll(io.stdin)) : generateSecret()
      table[identityName] = { hash: await hashSecret(secret), created: new Date().toISOString() }
      await writeIdentitiesFile(file, table)
      io.stderr.write(`fnbus: identity ${identityName} ${values.force === true ? 'updated in' : 'added to'} ${file}; ` +
        `its clients may use any free client id; "${clientIdStem(identityName)}" and "${clientIdStem(identityName)}.SUFFIX" are reserved for it\n`)
      // only the generated secret is printed: it exists nowhere else
      if (!given) io.stdout.write(secret + '\n')
      return ExitCode.Ok
    }
  }
}

function identitiesFile (values: ParsedArgs['values'], io: Io): string {
  const explicit = stringOption(values, 'file')
  if (explicit !== undefined) return resolve(io.cwd, explicit)
  const config = loadConfig(stringOption(values, 'config'), io.cwd)
  const file = identitiesFileOf(config, io.cwd)
  if (file === undefined) {
    throw new UsageError(`${config.file ?? 'the configuration'} holds its identities inline; name a file with --file, or point "identities" at one`)
  }
  return file
}

/** A secret piped in (`echo s3cret | fnbus identity add alice --password-stdin`): without its final newline. */
function secretFromStdin (bytes: Buffer): string {
  const secret = bytes.toString('utf8').replace(/\r?\n$/, '')
  if (secret.length === 0) throw new UsageError('--password-stdin read an empty secret')
  return secret
}
