// What a decoder returns: a value and the bytes it used, a request for more bytes, or a typed
// protocol error. Decoders never throw on short or bad input; the connection decides what is fatal.

export type ProtocolErrorKind =
  | 'bad-magic' // cannot resynchronise: the connection must close
  | 'bad-flags' // unknown client flags in the handshake: close
  | 'too-long' // a length beyond what we are willing to buffer
  | 'malformed'; // a structure that does not parse (answered ERR_INVALID in options)

export interface ProtocolError {
  readonly kind: ProtocolErrorKind;
  readonly message: string;
}

export type Decoded<T> =
  | { readonly ok: true; readonly value: T; readonly used: number }
  | { readonly ok: false; readonly more: number } // at least this many more bytes are needed
  | { readonly ok: false; readonly more?: undefined; readonly error: ProtocolError };

export const decoded = <T>(value: T, used: number): Decoded<T> => ({ ok: true, value, used });
export const needMore = (more: number): Decoded<never> => ({ ok: false, more });
export const protocolError = (kind: ProtocolErrorKind, message: string): Decoded<never> => ({
  ok: false,
  error: { kind, message },
});

/** A parse result for a complete option payload: a value or a reason it is malformed. */
export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };
export const parsed = <T>(value: T): Parsed<T> => ({ ok: true, value });
export const malformed = (message: string): Parsed<never> => ({ ok: false, message });
