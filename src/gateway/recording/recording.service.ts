import { Injectable } from '@nestjs/common';
import { Recorder, RecordingStart } from './recording.types';

export type { Recorder, RecordingSeal, RecordingStart } from './recording.types';

/** Starts session recordings: asciicast v2, written in encrypted chunks, sealed with size and SHA-256. */
@Injectable()
export class RecordingService {
  /** Creates the recording row; rejects when it cannot (the gateway then refuses the connection). */
  start(_o: RecordingStart): Promise<Recorder> {
    return Promise.reject(new Error('recording service: not implemented yet'));
  }
}
