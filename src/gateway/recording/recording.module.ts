import { Module } from '@nestjs/common';
import { RecordingStore } from './recording-store';
import { RecordingService } from './recording.service';

/** Session recordings: the gateway imports this module and calls RecordingService.start per session. */
@Module({
  providers: [RecordingService, RecordingStore],
  exports: [RecordingService],
})
export class RecordingModule {}
