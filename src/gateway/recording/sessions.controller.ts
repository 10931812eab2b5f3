import { Controller, Get, HttpCode, Param, Post, Query, StreamableFile } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { Actor } from '../../common/actor';
import { ApiAnswer, apiView, pageOf } from '../../common/api-responses';
import { CurrentActor, Roles } from '../../common/auth.decorators';
import { Page } from '../../common/pagination';
import { UuidPipe } from '../../common/validation';
import { RecordingVerifyView, SessionListQuery, SessionView } from './sessions.dto';
import { SessionsService } from './sessions.service';

export const ASCIICAST_TYPE = 'application/x-asciicast';

/**
 * The asciicast file, streamed. Documented as text of its media type; the handler answers a StreamableFile (the zod
 * output type is narrowed so @ApiAnswer's compile-time check accepts it).
 */
const AsciicastFile = apiView(
  'AsciicastFile',
  z.string().describe('asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one JSON event per line.'),
) as unknown as z.ZodType<StreamableFile>;

@ApiTags('Sessions')
@Controller('v1/sessions')
export class SessionsController {
  constructor(private readonly sessions: SessionsService) {}

  @ApiOperation({ summary: 'List SSH gateway sessions, newest first (operators and vendors: their own)' })
  @ApiAnswer(pageOf(SessionView))
  @Roles('operator', 'vendor', 'admin', 'auditor')
  @Get()
  list(@CurrentActor() actor: Actor, @Query() q: SessionListQuery): Promise<Page<SessionView>> {
    return this.sessions.list(actor, q);
  }

  @ApiOperation({ summary: 'Read a gateway session and its recording state (operators and vendors: their own)' })
  @ApiAnswer(SessionView)
  @Roles('operator', 'vendor', 'admin', 'auditor')
  @Get(':id')
  get(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<SessionView> {
    return this.sessions.get(actor, id);
  }

  @ApiOperation({
    summary: "Download a session's recording (asciicast v2), audited",
    description: 'What is stored so far: a live session\'s recording grows. Each download writes `session.recording_read`. 404 when the session has no recording.',
  })
  @ApiAnswer(AsciicastFile, { contentType: ASCIICAST_TYPE })
  @Roles('admin', 'auditor')
  @Get(':id/recording')
  async recording(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<StreamableFile> {
    const { stream } = await this.sessions.download(actor, id);
    return new StreamableFile(stream, { type: ASCIICAST_TYPE, disposition: `attachment; filename="session-${id}.cast"` });
  }

  @ApiOperation({
    summary: "Verify a session's recording against the hash in its closing audit event",
    description:
      'Decrypts and hashes the stored chunks and compares the SHA-256 with the one in the `gateway.session_ended` audit event (whose MAC and chain links are checked) and with the sealed row. A changed byte anywhere gives ok: false with the problems found.',
  })
  @ApiAnswer(RecordingVerifyView)
  @Roles('auditor')
  @Post(':id/verify')
  @HttpCode(200)
  verify(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<RecordingVerifyView> {
    return this.sessions.verify(actor, id);
  }
}
