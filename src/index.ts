// The public surface of fnbus. Everything else is internal and may change.
export { FCClient, DEFAULT_URL, DEFAULT_TIMEOUT_MS } from './client/fc-client.js'
export type {
  FCClientOptions, InvokeFunctionParams, InvocationResult, SyncInvocationResult, AsyncInvocationResult, InvokeCallback,
  InvokeOptions, InvokeAsyncOptions, ClientServeOptions, ClientPublishOptions, ClientEventHandler, ClientServedFunction,
  EventMessage, QueueCounts, DeadLetter,
} from './client/fc-client.js'
export { IoTData, type IoTDataPublishParams } from './client/iot-data.js'
// AWS Greengrass v1's names, beside Link IoT Edge's: `require('fnbus')` in place of `require('aws-greengrass-core-sdk')`
export { IotData, Lambda, lambdaFunction, type IotDataPublishParams, type LambdaInvokeParams, type LambdaInvokeResult } from './client/greengrass.js'
// the gateway's modules load when a gateway is first made, not with the package (gateway-entry.ts)
export { createGateway, attachFunctionBus, FunctionBus } from './gateway-entry.js'
export type { Gateway, GatewayOptions, HttpOptions, StatusOptions, BrokerStorage, BridgeConfig, ClusterConfig } from './gateway.js'
export { BUILTIN_PLUGINS } from './plugins.js'
export { sendJson } from './http/send-json.js'
export { HostAllowList, parseAllowedHosts } from './http/hosts.js'
export { WWW_AUTHENTICATE } from './http/identity-auth.js'
export { GATEWAY_IDENTITY } from './security/identity.js'
export type { ServeOptions, ServedFunction, FunctionOptions, AsyncOptions, PublishOptions, EventHandler } from './broker/function-bus.js'
export { configError, ErrorCodes, FnbusError, FunctionError, isErrorCode, type ErrorCode } from './errors.js'
// from their own modules, not options.js: that one brings the configuration's validators (~180 KB), which a
// function that only calls never needs
export { DEFAULT_LIMITS, type Limits } from './limits.js'
export type { Logger } from './logger.js'
export type { BusOptions } from './options.js'
export { parsePolicy, Policy, ANONYMOUS_IDENTITY, type PolicyRule, type Grants, type Action } from './security/policy.js'
export { isValidIdentityName } from './security/identity-names.js'
export type { Handler, Callback, InvocationContext } from './runtime/handler.js'
export { PROTOCOL_VERSION } from './protocol/envelope.js'
// what a plugin needs to validate the topics, filters and function names of its configuration as the bus does
export { checkEventFilter, checkEventTopic, topicMatches } from './protocol/events.js'
export { parseFunctionName, type FunctionAddress } from './protocol/names.js'
export { VERSION } from './version.js'
export { DEFAULT_ROUTE_IDENTITY, PAYLOAD_FORMATS, parseRouteRules, parseRoutesOptions, type PayloadFormat, type RouteRule, type RouteRuleInput } from './route-rules.js'
export { GatewayEvents } from './plugins.js'
export { LATENCY_BUCKETS, type InvocationTallySnapshot } from './dispatcher/tally.js'
export type {
  GatewayPlugin, PluginFactory, PluginContext, GatewayEventMap, GatewayEventName, InvocationOutcome, InvocationObservation,
  AcceptedObservation, RetryObservation, DeadLetterObservation, ClientObservation, WorkerObservation,
  RejectedObservation, FrameDroppedObservation, EventMessageObservation, LimitObservation,
  MessageDroppedObservation, ConnectionCutObservation,
  HttpMethod, HttpRequestInfo, AuthorizeDecision, HttpAuthorizer, HttpRequestContext, HttpHandler, HttpRouteOptions, HttpRoutes,
  GatewayStatus, FunctionStatus, WorkerStatus, InstanceStatus, DeadLetterStatus, HealthStatus, InstanceSource,
  BridgeStatus, BridgeDropReason, BridgeInboundDropReason, ClusterStatus, ClusterMemberStatus,
} from './plugins.js'
