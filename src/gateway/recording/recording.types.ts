/**
 * The recording contract the SSH gateway codes against (issue 16). One recording per gateway session; every
 * `session` channel of it is appended in order.
 */
export interface RecordingStart {
  /** gateway_sessions.id — the recording's key and part of every chunk's encryption binding. */
  sessionId: string;
  width: number;
  height: number;
  term?: string;
  /** Record what the user types too (account policy `recordInput`). */
  recordInput: boolean;
  startedAt: Date;
}

export interface RecordingSeal {
  /** Bytes of the plaintext asciicast file. */
  size: number;
  /** SHA-256 (hex) of the plaintext asciicast file. */
  sha256: string;
}

export interface Recorder {
  /** Terminal output (stdout + stderr of a session channel); returns false when the bounded buffer is above its
   *  high-water mark: the caller pauses its source until 'drain'. */
  output(data: Buffer): boolean;
  /** What the user typed; recorded only when `recordInput` (otherwise a no-op that returns true). */
  input(data: Buffer): boolean;
  resize(width: number, height: number): void;
  /** An asciicast "m" event, e.g. `exec: <command>`, `shell`, `channel closed`. */
  marker(label: string): void;
  once(event: 'drain', cb: () => void): void;
  /** Called once if the recording cannot be written (the gateway then ends the session: fail closed). */
  onFailure(cb: (err: Error) => void): void;
  /** Flushes and seals; resolves with the plaintext asciicast's size and SHA-256 (hex). Rejects when the recording
   *  failed (the session must then be ended with reason `recording_failed`). */
  finish(): Promise<RecordingSeal>;
}
