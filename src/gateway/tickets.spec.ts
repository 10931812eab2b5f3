import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { utils } from 'ssh2';
import { newEd25519Pair } from '../common/ssh-keys';
import { DomainException } from '../common/errors';
import { keyFingerprint, newTicket, parsePublicKeyLine, ticketHash } from './tickets';

describe('gateway tickets', () => {
  it('are vgt_ + 32 random bytes; only ticket-shaped text has a hash (SHA-256)', () => {
    const a = newTicket();
    expect(a).toMatch(/^vgt_[A-Za-z0-9_-]{43}$/);
    expect(newTicket()).not.toBe(a);
    expect(ticketHash(a)).toHaveLength(32);
    expect(ticketHash(a)!.equals(ticketHash(a)!)).toBe(true);
    for (const other of ['', 'vgt_', `${a}x`, a.slice(0, -1), a.replace('vgt_', 'vgx_'), `${a}\n`, 'root', 'correct-horse']) expect(ticketHash(other)).toBeNull();
  });

  it('bind to OpenSSH public key lines: ed25519, ecdsa, RSA of 2048 bits or more; anything else is 400', () => {
    for (const [type, opts] of [['ed25519', {}], ['ecdsa', { bits: 256 }], ['ecdsa', { bits: 521 }], ['rsa', { bits: 2048 }]] as const) {
      const pair = utils.generateKeyPairSync(type as 'rsa', opts as { bits: number });
      const blob = parsePublicKeyLine(`${pair.public} someone@laptop`);
      const parsed = utils.parseKey(pair.public);
      expect(parsed instanceof Error ? null : (parsed as { getPublicSSH(): Buffer }).getPublicSSH().equals(blob)).toBe(true);
    }
    const small = utils.generateKeyPairSync('rsa', { bits: 1024 });
    const ed = newEd25519Pair(utils);
    const refused = [small.public, ed.private, 'ssh-dss AAAAB3NzaC1kc3MAAACBAP', 'ssh-ed25519', 'ssh-ed25519 !!!!', `ssh-rsa ${ed.public.split(' ')[1]}`, `${ed.public}\nssh-ed25519 AAAA`, ''];
    for (const line of refused) {
      let code: string | undefined;
      try {
        parsePublicKeyLine(line);
      } catch (e) {
        code = (e as DomainException).code;
      }
      expect(code).toBe('VALIDATION_FAILED');
    }
  });

  it("fingerprints keys the way ssh-keygen -l does (SHA256, unpadded base64)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'fp-'));
    try {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
      const line = readFileSync(join(dir, 'k.pub'), 'utf8').trim();
      const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'k.pub')], { encoding: 'utf8' }).split(' ')[1];
      expect(`SHA256:${keyFingerprint(parsePublicKeyLine(line))}`).toBe(printed);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
