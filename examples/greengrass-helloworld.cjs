/*
 * A Greengrass v1 function in Greengrass' own form, moved to fnbus by its require line alone: a long-lived function
 * that publishes a greeting with its platform to `hello/world` every five seconds through IotData.
 */
const ggSdk = require('fnbus') // was: require('aws-greengrass-core-sdk')
const os = require('os')
const util = require('util')

const iotClient = new ggSdk.IotData()
const platform = util.format('%s-%s', os.platform(), os.release())

function publishCallback (err, data) {
  if (err) console.error('publish failed', err)
  else console.log('published', data)
}

function greet () {
  iotClient.publish({
    topic: 'hello/world',
    payload: JSON.stringify({ message: util.format('Hello world! Sent from a Greengrass function on platform %s', platform) }),
    queueFullPolicy: 'AllOrError',
  }, publishCallback)
}

setInterval(greet, 5000)

// the handler does nothing: the work is the timer's
exports.handler = function handler (event, context, callback) {
  callback(null, 0)
}
