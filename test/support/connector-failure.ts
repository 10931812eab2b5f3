import { ConnectorError } from '../../src/connectors/connector.errors';

/** Awaits a connector call that must fail, and resolves to its ConnectorError (anything else fails the test). */
export async function failure(p: Promise<unknown>): Promise<ConnectorError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectorError);
    return e as ConnectorError;
  }
  throw new Error('expected the call to fail');
}
