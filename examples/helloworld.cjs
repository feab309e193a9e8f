// The helloworld function (serviceName EdgeFC, functionName helloworld) that the invoker sample of Alibaba
// Link IoT Edge's Node.js function SDK calls: "invokeFunction", sample code of the called function,
// https://www.alibabacloud.com/help/doc-detail/108199.htm. It shows what the invoker passed and answers
// 'Message from helloworld' (the answer the invoker sample's comment expects). The seed sample needs no require
// line, so it runs under fnbus unchanged. Note: the copy of that page available when this file was written was
// cut short after the handler's first line; the body follows the page's description of the sample. (.cjs only
// because this repository's package.json declares "type": "module".)
//
//   fnbus run examples/helloworld.cjs --service EdgeFC --function helloworld
'use strict';

module.exports.handler = function(event, context, callback) {
  console.log(event);   // String message from Invoker.
  console.log(context); // its invokerContext: { custom: { data: 'Custom context from Invoker' } }
  callback(null, 'Message from helloworld');
};
