// Types of the CommonJS entry: the same names as the ES module's (index.cjs hands `require('fnbus')` that module's
// namespace, loaded through require(esm), which Node ≥ 20.19 does without a flag).
export * from '../dist/index.js'
