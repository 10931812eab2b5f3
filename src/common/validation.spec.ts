import { ArgumentMetadata } from '@nestjs/common';
import { CreateAccountDto } from '../account-admin/accounts.dto';
import { CreateTargetDto } from '../targets/targets.dto';
import { DomainException } from './errors';
import { PageQuery, decodeCursor, encodeCursor } from './pagination';
import { createValidationPipe, isTimestamp } from './validation';

const pipe = createValidationPipe();
const body = (metatype: ArgumentMetadata['metatype']): ArgumentMetadata => ({ type: 'body', metatype });
const target = { name: 'db1', type: 'postgres', host: 'db.example.com', port: 5432, admin: { username: 'postgres', password: 'pw' } };

async function rejection(value: unknown, metatype: ArgumentMetadata['metatype']): Promise<DomainException> {
  try {
    await pipe.transform(value, body(metatype));
  } catch (e) {
    return e as DomainException;
  }
  throw new Error('expected a validation failure');
}

describe('validation', () => {
  it('accepts a well-formed target', async () => {
    await expect(pipe.transform(target, body(CreateTargetDto))).resolves.toBeInstanceOf(CreateTargetDto);
  });

  it.each([
    ['unknown top-level field', { ...target, extra: 1 }, /extra: unknown field/],
    ['unknown nested field', { ...target, admin: { ...target.admin, root: true } }, /admin.root: unknown field/],
    ['unknown option', { ...target, options: { shell: '/bin/sh' } }, /options.shell: unknown field/],
    ['wrong type', { ...target, port: '5432' }, /port/],
    ['bad enum', { ...target, type: 'oracle' }, /type must be one of/],
    ['hostile host', { ...target, host: 'db; rm -rf /' }, /host must be a DNS name/],
    ['hostile name', { ...target, name: "x'; DROP TABLE targets; --" }, /name must be/],
    ['array body', [target], /./],
  ])('refuses %s with VALIDATION_FAILED', async (_label, value, message) => {
    const e = await rejection(value, CreateTargetDto);
    expect(e).toBeInstanceOf(DomainException);
    expect(e.code).toBe('VALIDATION_FAILED');
    expect(e.status).toBe(400);
    expect(e.message).toMatch(message);
  });

  it('never echoes submitted values', async () => {
    const e = await rejection({ targetId: 'not-a-uuid', username: 'u', password: 'pw\u0001secret-value', policy: { approvalsRequired: 99 } }, CreateAccountDto);
    expect(e.message).not.toContain('secret-value');
    expect(e.message).toMatch(/targetId/);
    expect(e.message).toMatch(/approvalsRequired/);
  });

  it('validates page queries and cursors', async () => {
    await expect(pipe.transform({ limit: '0' }, { type: 'query', metatype: PageQuery })).rejects.toBeInstanceOf(DomainException);
    await expect(pipe.transform({ limit: '10', cursor: encodeCursor(['x']) }, { type: 'query', metatype: PageQuery })).resolves.toMatchObject({ limit: 10 });
    expect(() => decodeCursor('bm90IGpzb24', ['string'])).toThrow(DomainException);
    expect(() => decodeCursor(encodeCursor([1]), ['string'])).toThrow(DomainException);
    expect(decodeCursor(encodeCursor(['a']), ['string'])).toEqual(['a']);
  });
});

describe('isTimestamp', () => {
  it('takes ISO 8601 extended times with a zone on real days, nothing else', () => {
    for (const ok of ['2027-01-01T00:00:00Z', '2027-01-01T00:00Z', '2027-01-01T01:00:00.123+01:00', '2028-02-29T23:59:59-05:00']) expect([ok, isTimestamp(ok)]).toEqual([ok, true]);
    for (const bad of ['20270101T000000Z', '2027-01-01', '2027-01-01T00:00:00', '2027-02-30T00:00:00Z', '2027-13-01T00:00:00Z', '1969-12-31T23:59:59Z', '10000-01-01T00:00:00Z', ' 2027-01-01T00:00:00Z', 20270101]) {
      expect([bad, isTimestamp(bad)]).toEqual([bad, false]);
    }
  });
});
