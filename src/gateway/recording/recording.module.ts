import { Module } from '@nestjs/common';
import { RecordingService } from './recording.service';

/** Session recordings: the gateway imports this module and calls RecordingService.start per session. */
@Module({
  providers: [RecordingService],
  exports: [RecordingService],
})
export class RecordingModule {}
