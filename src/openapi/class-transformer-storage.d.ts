/** class-transformer's metadata storage (where `@Type(() => X)` is kept) ships without typings for its CommonJS path. */
declare module 'class-transformer/cjs/storage' {
  export { defaultMetadataStorage } from 'class-transformer/types/storage';
}
