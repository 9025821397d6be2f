/**
 * Every error this library throws is a `MlxRerankError` with a stable `code`, so services can branch
 * on `err.code` instead of parsing messages. Messages say what was wrong and what to do about it.
 */
export type ErrorCode =
  | 'E_MODEL_NOT_FOUND' // no such local folder / Hub repo / file in the cache while offline
  | 'E_DOWNLOAD' // network or HTTP failure while fetching from the Hub
  | 'E_AUTH' // 401/403 from the Hub: token missing or not allowed
  | 'E_INTEGRITY' // a downloaded or cached file does not match its size or hash
  | 'E_UNSUPPORTED_MODEL' // not a BERT sequence classifier, or pickle-only weights
  | 'E_BAD_CONFIG' // config.json malformed or inconsistent with the weights
  | 'E_BAD_WEIGHTS' // safetensors file malformed, truncated, lying header, missing tensor
  | 'E_BAD_TOKENIZER' // tokenizer.json / vocab.txt malformed or unsupported
  | 'E_INPUT' // bad arguments from the caller (pairs not strings, bad options, ...)
  | 'E_QUEUE_FULL' // maxQueuePairs reached: back off and retry
  | 'E_ABORTED' // the caller's AbortSignal fired
  | 'E_DEADLINE' // the call's deadlineMs passed before all its pairs reached the engine
  | 'E_DISPOSED' // the CrossEncoder was disposed
  | 'E_BACKEND_UNAVAILABLE' // the requested engine is not compiled in or has no device
  | 'E_ENGINE'; // the engine failed while computing (out of memory, device lost, ...)

/**
 * The base class. `C` narrows `code` to the subclass's literal (`new InputError('x').code` has type
 * 'E_INPUT'), so a `switch (err.code)` after an `instanceof` check is exhaustive.
 */
export class MlxRerankError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ModelNotFoundError extends MlxRerankError<'E_MODEL_NOT_FOUND'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MODEL_NOT_FOUND', message, options);
  }
}
export class DownloadError extends MlxRerankError<'E_DOWNLOAD' | 'E_AUTH'> {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(status === 401 || status === 403 ? 'E_AUTH' : 'E_DOWNLOAD', message, options);
    this.status = status;
  }
}
export class IntegrityError extends MlxRerankError<'E_INTEGRITY'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INTEGRITY', message, options);
  }
}
export class UnsupportedModelError extends MlxRerankError<'E_UNSUPPORTED_MODEL'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_UNSUPPORTED_MODEL', message, options);
  }
}
export class ConfigError extends MlxRerankError<'E_BAD_CONFIG'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_CONFIG', message, options);
  }
}
export class WeightsError extends MlxRerankError<'E_BAD_WEIGHTS'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_WEIGHTS', message, options);
  }
}
export class TokenizerError extends MlxRerankError<'E_BAD_TOKENIZER'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_TOKENIZER', message, options);
  }
}
export class InputError extends MlxRerankError<'E_INPUT'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INPUT', message, options);
  }
}
export class QueueFullError extends MlxRerankError<'E_QUEUE_FULL'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_QUEUE_FULL', message, options);
  }
}
export class AbortedError extends MlxRerankError<'E_ABORTED'> {
  constructor(message = 'The operation was aborted by its AbortSignal.', options?: { cause?: unknown }) {
    super('E_ABORTED', message, options);
  }
}
/** The call's `deadlineMs` passed while some of its pairs still waited for the engine (they never ran). */
export class DeadlineError extends MlxRerankError<'E_DEADLINE'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_DEADLINE', message, options);
  }
}
export class DisposedError extends MlxRerankError<'E_DISPOSED'> {
  constructor(message = 'This CrossEncoder was disposed; load the model again to keep scoring.') {
    super('E_DISPOSED', message);
  }
}
export class BackendUnavailableError extends MlxRerankError<'E_BACKEND_UNAVAILABLE'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BACKEND_UNAVAILABLE', message, options);
  }
}
export class EngineError extends MlxRerankError<'E_ENGINE'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_ENGINE', message, options);
  }
}

const BY_CODE: { [C in ErrorCode]: (message: string, cause: unknown) => MlxRerankError } = {
  E_MODEL_NOT_FOUND: (m, cause) => new ModelNotFoundError(m, { cause }),
  E_DOWNLOAD: (m, cause) => new DownloadError(m, undefined, { cause }),
  E_AUTH: (m, cause) => new DownloadError(m, 401, { cause }),
  E_INTEGRITY: (m, cause) => new IntegrityError(m, { cause }),
  E_UNSUPPORTED_MODEL: (m, cause) => new UnsupportedModelError(m, { cause }),
  E_BAD_CONFIG: (m, cause) => new ConfigError(m, { cause }),
  E_BAD_WEIGHTS: (m, cause) => new WeightsError(m, { cause }),
  E_BAD_TOKENIZER: (m, cause) => new TokenizerError(m, { cause }),
  E_INPUT: (m, cause) => new InputError(m, { cause }),
  E_QUEUE_FULL: (m, cause) => new QueueFullError(m, { cause }),
  E_ABORTED: (m, cause) => new AbortedError(m, { cause }),
  E_DEADLINE: (m, cause) => new DeadlineError(m, { cause }),
  E_DISPOSED: (m) => new DisposedError(m),
  E_BACKEND_UNAVAILABLE: (m, cause) => new BackendUnavailableError(m, { cause }),
  E_ENGINE: (m, cause) => new EngineError(m, { cause }),
};

/**
 * Native errors carry a `code` string set by native/addon/; map them onto our classes (anything
 * without a known code becomes an EngineError holding the original as its `cause`). src/native.ts
 * applies this to everything the addon rejects or throws, so no plain Error leaves the package.
 */
export function fromNativeError(err: unknown): MlxRerankError {
  if (err instanceof MlxRerankError) return err;
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = e?.code;
  return typeof code === 'string' && Object.hasOwn(BY_CODE, code)
    ? BY_CODE[code as ErrorCode](message, err)
    : new EngineError(message, { cause: err });
}
