// The invoker sample of Alibaba Link IoT Edge's Node.js function SDK (linkedge-core-sdk), as its documentation
// gives it ("invokeFunction", sample code for calling a function:
// https://www.alibabacloud.com/help/doc-detail/108199.htm). Only the require line is changed: fnbus in place of
// linkedge-core-sdk. Run it with `fnbus run examples/invoker.cjs --service EdgeFC --function invoker`, or let
// `npm start` supervise it (fnbus.config.json), then `fnbus invoke EdgeFC/invoker`: its log shows
// "Message from helloworld". (.cjs only because this repository's package.json declares "type": "module"; in a
// project of your own the file can stay index.js.)
'use strict';

const leSdk = require('fnbus');
const fc = new leSdk.FCClient();

module.exports.handler = function (event, context, callback) {
  var ctx = {
    custom: {
      data: 'Custom context from Invoker',
    },
  };
  var invokerContext = Buffer.from(JSON.stringify(ctx)).toString('base64');
  var invokeParams = {
    serviceName: 'EdgeFC',
    functionName: 'helloworld',
    invocationType: 'Sync',
    invokerContext: invokerContext,
    payload: 'String message from Invoker.',
  };
  fc.invokeFunction(invokeParams, (err, data) => {
    if (err) {
      console.log(err);
    } else {
      console.log(data.payload); // Message from helloworld
    }
    callback(null);
  });
};
