'use strict'
// CommonJS entry (the Link IoT Edge samples use require). Node >= 20.19 loads the ES module synchronously;
// the module graph has no top-level await, which keeps that possible.
module.exports = require('../dist/index.js')
