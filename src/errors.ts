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
  | 'E_DISPOSED' // the CrossEncoder was disposed
  | 'E_BACKEND_UNAVAILABLE' // the requested engine is not compiled in or has no device
  | 'E_ENGINE'; // the engine failed while computing (out of memory, device lost, ...)

export class MlxRerankError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ModelNotFoundError extends MlxRerankError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MODEL_NOT_FOUND', message, options);
  }
}
export class DownloadError extends MlxRerankError {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(status === 401 || status === 403 ? 'E_AUTH' : 'E_DOWNLOAD', message, options);
    this.status = status;
  }
}
export class IntegrityError extends MlxRerankError {
  constructor(message: string) {
    super('E_INTEGRITY', message);
  }
}
export class UnsupportedModelError extends MlxRerankError {
  constructor(message: string) {
    super('E_UNSUPPORTED_MODEL', message);
  }
}
export class ConfigError extends MlxRerankError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_CONFIG', message, options);
  }
}
export class WeightsError extends MlxRerankError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_WEIGHTS', message, options);
  }
}
export class TokenizerError extends MlxRerankError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BAD_TOKENIZER', message, options);
  }
}
export class InputError extends MlxRerankError {
  constructor(message: string) {
    super('E_INPUT', message);
  }
}
export class QueueFullError extends MlxRerankError {
  constructor(message: string) {
    super('E_QUEUE_FULL', message);
  }
}
export class AbortedError extends MlxRerankError {
  constructor(message = 'The operation was aborted by its AbortSignal.', options?: { cause?: unknown }) {
    super('E_ABORTED', message, options);
  }
}
export class DisposedError extends MlxRerankError {
  constructor(message = 'This CrossEncoder was disposed; load the model again to keep scoring.') {
    super('E_DISPOSED', message);
  }
}
export class BackendUnavailableError extends MlxRerankError {
  constructor(message: string) {
    super('E_BACKEND_UNAVAILABLE', message);
  }
}
export class EngineError extends MlxRerankError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_ENGINE', message, options);
  }
}

/** Native errors carry a `code` string set by native/addon/; map them onto our classes. */
export function fromNativeError(err: unknown): MlxRerankError {
  if (err instanceof MlxRerankError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  switch (e?.code) {
    case 'E_BAD_WEIGHTS':
      return new WeightsError(message, { cause: err });
    case 'E_BAD_CONFIG':
      return new ConfigError(message, { cause: err });
    case 'E_INPUT':
      return new InputError(message);
    case 'E_BACKEND_UNAVAILABLE':
      return new BackendUnavailableError(message);
    default:
      return new EngineError(message, { cause: err });
  }
}
