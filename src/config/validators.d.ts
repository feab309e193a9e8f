// The validators scripts/build-validation.js generates from schema.ts into dist/config/validators.js.

export interface SchemaError {
  readonly instancePath: string
  readonly keyword: string
  readonly params: Readonly<Record<string, unknown>>
  readonly message?: string
  /** With ajv's `verbose`: the schema holding the keyword, and the value that failed it. */
  readonly parentSchema?: Readonly<Record<string, unknown>>
  readonly data?: unknown
}

export interface Validator {
  (data: unknown): boolean
  errors?: readonly SchemaError[] | null
}

export declare const validateConfig: Validator
export declare const validateGatewayOptions: Validator
export declare const validateFunctionOptions: Validator
/** sha256 of schema/fnbus.config.schema.json as the build wrote it. */
export declare const schemaDigest: string
