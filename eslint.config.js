// Lint: neostandard (the style aedes, fastify and pino use), TypeScript-aware; with the type information a promise
// nobody awaits or handles is an error (a rejection there would escape the gateway's event loop).
import neostandard from 'neostandard'
import globals from 'globals'

export default [
  ...neostandard({
    ts: true,
    // examples/ holds Link IoT Edge's and Greengrass' own samples as they wrote them
    ignores: ['dist/**', 'node_modules/**', 'benchmarks/node_modules/**', 'data/**', 'examples/**'],
  }),
  {
    rules: {
      // objects here put short related properties on one line and long ones on their own
      '@stylistic/object-property-newline': 'off',
      // helpers are written below the code that reads them, as the story goes top-down
      'no-use-before-define': ['error', { functions: false, classes: false, variables: false }],
      // `void promise` is how a promise is marked as handled elsewhere (no-floating-promises asks for it)
      'no-void': ['error', { allowAsStatement: true }],
      // a loop whose condition an awaited callback changes is a false alarm of this rule, and the common case here
      'no-unmodified-loop-condition': 'off',
      'no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      'no-use-before-define': 'off',
      'no-unused-vars': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-use-before-define': ['error', { functions: false, classes: false, variables: false, typedefs: false, enums: false }],
    },
  },
  {
    files: ['src/**/*.ts', 'plugins/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
  },
  {
    // prom-client's metrics register themselves in the registry they are made with
    files: ['plugins/metrics/**/*.ts'],
    rules: { 'no-new': 'off' },
  },
  {
    files: ['plugins/dashboard/page/**/*.js', 'scripts/browser/**/*.js', 'test/e2e/dashboard.test.js'],
    languageOptions: { globals: globals.browser },
    // a page imports by URL path: `/fnbus.js` is what the gateway serves
    rules: { 'import-x/no-absolute-path': 'off' },
  },
]
