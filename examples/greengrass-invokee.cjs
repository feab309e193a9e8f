/*
 * A Greengrass v1 function another one invokes by its Lambda name (fnbus.config.json gives it `"lambdaName":
 * "invokee"`): it answers with an object, which reaches its caller as JSON, and shows the caller's client context.
 */
exports.handler = function handler (event, context, callback) {
  console.log('invoked with', JSON.stringify(event), 'client context', JSON.stringify(context.clientContext))
  callback(undefined, { result: 'message', received: event })
}
