import type { RouteObject } from 'react-router';
import { HomePage } from './home';

/** Part C's pages under the signed-in layout (paths relative to the /portal basename). */
export const corePages: RouteObject[] = [{ index: true, element: <HomePage /> }];
