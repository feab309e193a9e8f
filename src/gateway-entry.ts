import { createRequire } from 'node:module'
import type * as BusModule from './broker/function-bus.js'
import type { BusOptions } from './options.js'
import type { Gateway, GatewayOptions } from './gateway.js'

/*
 * The package's gateway names, without the gateway. `import 'fnbus'` is what every function does, most of them only
 * to call or serve; the gateway's modules (aedes, LevelDB, the broker, the dispatcher, the store) would add ~30 MB
 * to each such process and ~0.1 s to its start. They load when the gateway is first asked for instead.
 */

/** Starts aedes with the function bus, its persistence and its listeners (the gateway's modules load on the first call). */
export async function createGateway (options: GatewayOptions = {}): Promise<Gateway> {
  const gateway = await import('./gateway.js')
  return await gateway.createGateway(options)
}

/**
 * The bus module, loaded synchronously on first use: `attachFunctionBus` returns its bus at once, as it always did.
 * A require of an ES module, which Node ≥ 20.19 does (the graph has no top-level await: docs/design.md, pitfall 13).
 */
let busModule: typeof BusModule | undefined
function loadBus (): typeof BusModule {
  busModule ??= createRequire(import.meta.url)('./broker/function-bus.js') as typeof BusModule
  return busModule
}

/** Attaches the function bus to an application's own aedes instance (the bus' modules load on the first call). */
export function attachFunctionBus (aedes: BusModule.FunctionBus['aedes'], options?: BusOptions): BusModule.FunctionBus {
  return loadBus().attachFunctionBus(aedes, options)
}

/**
 * The class itself, for `instanceof`, `new` and subclasses, standing in for it until first touched: the first
 * construction, property read or `instanceof` loads the bus module, and everything goes to the real class from then
 * on (a subclass's instances are built by the real constructor, with the subclass' prototype).
 */
export const FunctionBus: typeof BusModule.FunctionBus = new Proxy(function FunctionBus () {} as unknown as typeof BusModule.FunctionBus, {
  construct: (_target, args, newTarget) => Reflect.construct(loadBus().FunctionBus, args, newTarget === FunctionBus ? loadBus().FunctionBus : newTarget),
  get: (_target, key) => Reflect.get(loadBus().FunctionBus, key),
  has: (_target, key) => Reflect.has(loadBus().FunctionBus, key),
  getPrototypeOf: () => Reflect.getPrototypeOf(loadBus().FunctionBus),
  apply: () => { throw new TypeError("Class constructor FunctionBus cannot be invoked without 'new'") },
})
// the type of the same name, as a class declares both: what `attachFunctionBus` returns
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type FunctionBus = BusModule.FunctionBus
