// A function that does nothing: what a backlog drains through when only the bus' cost is measured.
module.exports.handler = function (event, context, callback) {
  callback(null)
}
