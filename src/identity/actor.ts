/** Moved to src/common/actor.ts (shared types live low); this re-export goes when every importer is updated. */
export * from '../common/actor';
