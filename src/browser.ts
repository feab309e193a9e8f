// The SDK as a web page uses it: FCClient and IoTData over MQTT-over-WebSocket (`ws://…`), and the error codes.
// Bundled by scripts/build-browser.js into dist/browser/fnbus.js; nothing here may pull in a node-only module.
export { FCClient, DEFAULT_TIMEOUT_MS } from './client/fc-client.js'
export type {
  FCClientOptions, InvokeFunctionParams, InvocationResult, SyncInvocationResult, AsyncInvocationResult, InvokeCallback,
  InvokeOptions, InvokeAsyncOptions, ClientServeOptions, ClientPublishOptions, ClientEventHandler, ClientServedFunction,
  EventMessage, QueueCounts, DeadLetter,
} from './client/fc-client.js'
export { IoTData, type IoTDataPublishParams } from './client/iot-data.js'
export { ErrorCodes, FnbusError, FunctionError, type ErrorCode } from './errors.js'
export { PROTOCOL_VERSION } from './protocol/envelope.js'
export { VERSION } from './version.js'
