import { FnbusError, invalidArgument } from '../errors.js'
import { FCClient } from './fc-client.js'
import type { FCClientOptions } from './types.js'
import { LAMBDA_NAME, LAMBDA_SERVICE } from '../protocol/names.js'

/**
 * AWS Greengrass v1's core SDK (`aws-greengrass-core-sdk`), on fnbus: `new IotData().publish()` and
 * `new Lambda().invoke()` with Greengrass' parameters and answers, so that a Greengrass function moves over by
 * changing its `require` line. A Lambda name becomes the fnbus function `Lambda/NAME`, which a function of the
 * configuration takes with `functions[].lambdaName` (or a worker serves under that name itself).
 */

type Callback<T> = (err: Error | null, data: T | null) => void

/** What the IotData and Lambda clients share: one FCClient, made when first needed. */
abstract class GreengrassClient {
  #client: FCClient | undefined
  readonly #options: FCClientOptions | FCClient | undefined

  constructor (options?: FCClientOptions | FCClient) {
    this.#options = options
  }

  protected get client (): FCClient {
    this.#client ??= this.#options instanceof FCClient ? this.#options : new FCClient(this.#options)
    return this.#client
  }

  /** Closes the connection (Greengrass' clients have none to close; a function that exits needs no call). */
  close (): Promise<void> {
    return this.#client?.close() ?? Promise.resolve()
  }
}

export interface IotDataPublishParams {
  readonly topic: string
  readonly payload: unknown
  /** Greengrass' choice for a full local queue: accepted and checked, not needed (the gateway keeps no such queue). */
  readonly queueFullPolicy?: 'BestEffort' | 'AllOrException' | 'AllOrError'
}

const QUEUE_FULL_POLICIES = new Set(['BestEffort', 'AllOrException', 'AllOrError'])

/** Greengrass' `IotData`: `publish({ topic, payload, queueFullPolicy }, callback)`. */
export class IotData extends GreengrassClient {
  publish (params: IotDataPublishParams): Promise<Record<string, never>>
  publish (params: IotDataPublishParams, callback: Callback<Record<string, never>>): void
  publish (params: IotDataPublishParams, callback?: Callback<Record<string, never>>): Promise<Record<string, never>> | void {
    const done = (async () => {
      if (typeof params !== 'object' || params === null) throw invalidArgument('publish needs { topic, payload }')
      if (params.queueFullPolicy !== undefined && !QUEUE_FULL_POLICIES.has(params.queueFullPolicy)) {
        throw invalidArgument(`queueFullPolicy must be BestEffort, AllOrException or AllOrError, got ${JSON.stringify(params.queueFullPolicy)}`)
      }
      await this.client.publish(params.topic, params.payload)
      return {}
    })()
    if (callback === undefined) return done
    done.then(data => callback(null, data), (err: Error) => callback(err, null))
  }
}

export interface LambdaInvokeParams {
  /** `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or the bare NAME. */
  readonly FunctionName: string
  readonly InvocationType?: 'RequestResponse' | 'Event'
  /** Base64 of a JSON object; the function sees it as `context.clientContext` (and `invokerContext`). */
  readonly ClientContext?: string
  /** A string (sent as the JSON value it holds, else as text) or bytes. */
  readonly Payload?: string | Buffer | Uint8Array
  /** Must match the ARN's own qualifier when both are given; fnbus runs one version of a function. */
  readonly Qualifier?: string
}

export interface LambdaInvokeResult {
  /** 200 for RequestResponse, 202 for Event. */
  readonly StatusCode: number
  /** `Handled` (the function called back with an error) or `Unhandled` (it threw, or its process died). */
  readonly FunctionError?: 'Handled' | 'Unhandled'
  /** RequestResponse: the function's answer as JSON text (bytes stay bytes); on a function error, `{"errorMessage": …}`. */
  readonly Payload?: string | Buffer
  /** Event: the id of the stored invocation. */
  readonly InvocationId?: string
}

const ARN = /^arn:[\w-]+:lambda:[\w-]*:\d*:function:([^:]+)(?::([^:]+))?$/

/** The fnbus function a Lambda `FunctionName` (ARN or name) stands for, and the ARN's qualifier. */
export function lambdaFunction (functionName: string): { readonly name: string, readonly qualifier: string | undefined } {
  if (typeof functionName !== 'string' || functionName.length === 0) throw invalidArgument('"FunctionName" is a required parameter')
  const arn = ARN.exec(functionName)
  const name = arn === null ? functionName : arn[1] as string
  if (!LAMBDA_NAME.test(name)) throw invalidArgument(`FunctionName is malformed: ${JSON.stringify(functionName)} (a Lambda ARN, or a name of letters, digits, - and _ starting with a letter)`)
  return { name: `${LAMBDA_SERVICE}/${name}`, qualifier: arn?.[2] }
}

/** Greengrass' `Lambda`: `invoke({ FunctionName, InvocationType, ClientContext, Payload, Qualifier }, callback)`. */
export class Lambda extends GreengrassClient {
  invoke (params: LambdaInvokeParams): Promise<LambdaInvokeResult>
  invoke (params: LambdaInvokeParams, callback: Callback<LambdaInvokeResult>): void
  invoke (params: LambdaInvokeParams, callback?: Callback<LambdaInvokeResult>): Promise<LambdaInvokeResult> | void {
    const done = this.#invoke(params)
    if (callback === undefined) return done
    done.then(data => callback(null, data), (err: Error) => callback(err, null))
  }

  async #invoke (params: LambdaInvokeParams): Promise<LambdaInvokeResult> {
    if (typeof params !== 'object' || params === null) throw invalidArgument('invoke needs { FunctionName, … }')
    const { name, qualifier } = lambdaFunction(params.FunctionName)
    if (params.Qualifier !== undefined && qualifier !== undefined && params.Qualifier !== qualifier) {
      throw invalidArgument(`Qualifier '${params.Qualifier}' does not match the version in FunctionName`)
    }
    const type = params.InvocationType ?? 'RequestResponse'
    if (type !== 'RequestResponse' && type !== 'Event') throw invalidArgument(`InvocationType '${String(type)}' is incorrect, should be 'Event' or 'RequestResponse'`)
    const [serviceName, functionName] = name.split('/') as [string, string]
    const data = await this.client.invokeFunction({
      serviceName,
      functionName,
      invocationType: type === 'Event' ? 'Async' : 'Sync',
      invokerContext: clientContext(params.ClientContext),
      payload: payloadOf(params.Payload),
    })
    if ('invocationId' in data) return { StatusCode: 202, InvocationId: data.invocationId }
    if (data.functionError !== undefined) {
      const message = typeof data.payload === 'string' ? data.payload : String(data.payload)
      return { StatusCode: 200, FunctionError: data.functionError, Payload: JSON.stringify({ errorMessage: message }) }
    }
    return { StatusCode: 200, Payload: Buffer.isBuffer(data.payload) ? data.payload : JSON.stringify(data.payload ?? null) }
  }
}

/** `ClientContext` is base64 of a JSON object, as Lambda's; it reaches the function decoded. */
function clientContext (value: string | undefined): Record<string, unknown> | undefined {
  if (value === undefined || value === '') return undefined
  let decoded: unknown
  try {
    decoded = JSON.parse(Buffer.from(value, 'base64').toString('utf8'))
  } catch {
    throw new FnbusError('FNBUS_INVALID_ARGUMENT', 'Client Context is invalid: not base64 of a JSON object')
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) throw invalidArgument('Client Context is invalid: not base64 of a JSON object')
  return decoded as Record<string, unknown>
}

/** A Lambda payload: JSON text arrives as the value it holds (as Lambda hands events over), other text as text. */
function payloadOf (payload: LambdaInvokeParams['Payload']): unknown {
  if (payload === undefined) return null
  if (typeof payload !== 'string') return Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  try {
    return JSON.parse(payload)
  } catch {
    return payload
  }
}
