import { useEffect, useRef, useState } from 'react';
import { ErrorMessage } from '../../ui/errors';

/**
 * asciinema-player (bundled by Vite, loaded on this page only: no script or style from another origin) playing an
 * asciicast v2 text. Its terminal emulator is WebAssembly: the vault's CSP allows compiling it on the player page only
 * (src/http/security-headers.ts).
 */
export function AsciicastPlayer({ cast }: { cast: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let dispose: (() => void) | undefined;
    let gone = false;
    void (async () => {
      const [{ create }] = await Promise.all([import('asciinema-player'), import('asciinema-player/dist/bundle/asciinema-player.css')]);
      if (gone || !box.current) return;
      // the file's own marker events (`m`) make the marker bar: given as an option they would not follow idleTimeLimit
      const player = create({ data: cast }, box.current, { fit: 'width', idleTimeLimit: 2, terminalFontSize: 'small' });
      dispose = () => player.dispose();
    })().catch(setError);
    return () => {
      gone = true;
      dispose?.();
    };
  }, [cast]);
  return (
    <>
      <ErrorMessage error={error} title="The player could not start" />
      <div ref={box} className="recording-player" data-testid="recording-player" />
    </>
  );
}
