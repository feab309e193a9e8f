// The benchmark's echo as an async handler: the returned promise answers.
export const handler = async event => event
