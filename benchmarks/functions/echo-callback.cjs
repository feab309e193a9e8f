'use strict'
// The benchmark's echo in Link IoT Edge's form, as functions moved over from it are written: the callback answers.
exports.handler = function (event, context, callback) {
  callback(null, event)
}
