/*
 * A Greengrass v1 function that invokes another by its Lambda ARN, with a client context and a JSON payload, and
 * logs the answer. On fnbus only its require line differs; the ARN's function name is mapped to a function of the
 * gateway by `functions[].lambdaName`.
 */
const ggSdk = require('fnbus') // was: require('aws-greengrass-core-sdk')

const lambdaClient = new ggSdk.Lambda()

exports.handler = function handler (event, context) {
  const clientContext = Buffer.from(JSON.stringify({ custom: { customData: 'customData' } })).toString('base64')
  const params = {
    FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:invokee:1',
    InvocationType: 'RequestResponse',
    ClientContext: clientContext,
    Payload: JSON.stringify({ message: 'payload message' }),
  }
  lambdaClient.invoke(params, (err, data) => {
    if (err) console.error(err, err.stack)
    else console.log('invokee answered', JSON.stringify(data))
  })
}
