import { api, ok } from '../../api/client';

/**
 * The asciicast text of a session (`GET /v1/sessions/{id}/recording`, which the vault audits), with its marker events
 * for the player's marker bar. Read as text: it is JSON lines, not one JSON document.
 */
export async function readRecording(id: string): Promise<{ cast: string; markers: Array<[number, string]>; events: number }> {
  const cast = ok(await api.GET('/v1/sessions/{id}/recording', { params: { path: { id } }, parseAs: 'text' })) as string;
  const markers: Array<[number, string]> = [];
  let events = 0;
  for (const line of cast.split('\n').slice(1)) {
    if (!line) continue;
    events++;
    const e = JSON.parse(line) as [number, string, string];
    if (e[1] === 'm') markers.push([e[0], e[2]]);
  }
  return { cast, markers, events };
}
