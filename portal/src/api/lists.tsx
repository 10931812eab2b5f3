import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { isIdle } from './activity';
import { api, ok } from './client';
import type { Page } from './views';

/** How often a view that may change by itself (pending, active) is read again while the tab is visible. */
export const LIVE_MS = 2000;

/** A refetch interval that holds while someone uses the page (see activity.ts: polling must not keep an idle session alive). */
const whileActive = (ms: number) => () => (isIdle() ? false : ms);

type Query = Record<string, string | number | undefined>;

/** The one untyped read: any list path with its query (each caller names the item type it reads). */
const getAny = api.GET as unknown as (path: string, init: { params: { query: Query } }) => Promise<{ data?: unknown }>;

/**
 * A keyset-paged list (`?limit=&cursor=` → `{items, nextCursor}`): the pages read so far, flattened, and a way to
 * read the next. `live` polls while the tab is visible (TanStack Query pauses when it is hidden).
 */
export function usePagedList<T>(path: string, query: Query, opts: { enabled?: boolean; live?: boolean; limit?: number } = {}) {
  const clean = Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined && v !== ''));
  const result = useInfiniteQuery({
    queryKey: [path, clean],
    enabled: opts.enabled ?? true,
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last: Page<T>) => last.nextCursor ?? undefined,
    refetchInterval: opts.live ? whileActive(LIVE_MS * 2.5) : false,
    refetchIntervalInBackground: false,
    queryFn: async ({ pageParam }) =>
      ok(await getAny(path, { params: { query: { ...clean, limit: opts.limit ?? 50, ...(pageParam ? { cursor: pageParam } : {}) } } })) as Page<T>,
  });
  const items = result.data?.pages.flatMap((p) => p.items) ?? [];
  return { ...result, items };
}

/** One item read again every LIVE_MS while `isLive(it)` holds and the tab is visible (polling pauses when it is hidden). */
export function useLiveItem<T>(key: readonly unknown[], read: () => Promise<T>, isLive: (item: T) => boolean) {
  return useQuery({
    queryKey: key,
    queryFn: read,
    refetchInterval: (q) => (q.state.data !== undefined && isLive(q.state.data) ? whileActive(LIVE_MS)() : false),
    refetchIntervalInBackground: false,
  });
}

/** "Show more" under a paged list; nothing when every page has been read. */
export function MoreButton({ list }: { list: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage(): unknown } }) {
  if (!list.hasNextPage) return null;
  return (
    <p>
      <button type="button" onClick={() => void list.fetchNextPage()} disabled={list.isFetchingNextPage}>
        {list.isFetchingNextPage ? 'Loading…' : 'Show more'}
      </button>
    </p>
  );
}
