import { Foundation1763798400000 } from './1763798400000-Foundation';

/** Every migration, oldest first. A test checks that each file in this folder is listed. */
export const MIGRATIONS = [Foundation1763798400000];
