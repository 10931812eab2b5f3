import sodium from 'libsodium-wrappers';

/** Resolves once libsodium's WebAssembly is loaded; every crypto entry point awaits it first. */
export async function readySodium(): Promise<typeof sodium> {
  await sodium.ready;
  return sodium;
}

export { sodium };
