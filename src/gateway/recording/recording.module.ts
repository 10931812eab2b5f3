import { Module } from '@nestjs/common';
import { RecordingStore } from './recording-store';
import { RecordingService } from './recording.service';
import { SessionsController } from './sessions.controller';
import { SessionsService } from './sessions.service';

/**
 * Session recordings and the sessions API (`/v1/sessions`). The gateway imports this module and calls
 * RecordingService.start per session.
 */
@Module({
  controllers: [SessionsController],
  providers: [RecordingService, RecordingStore, SessionsService],
  exports: [RecordingService],
})
export class RecordingModule {}
