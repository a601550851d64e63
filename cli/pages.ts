// Cursor-paged listings read to the end (or to `max` rows), merged into the
// API's own shape with nextCursor null.
import type { Api } from "./api.js";

export async function allPages<T>(api: Api, path: string, key: string, query: Record<string, string | string[] | undefined>, max = Infinity): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const limit = String(Math.min(200, max - items.length));
    const page = await api.call<Record<string, unknown>>("GET", path, { query: { ...query, limit, cursor } });
    items.push(...((page[key] as T[]) ?? []));
    cursor = typeof page.nextCursor === "string" && page.nextCursor !== "" ? page.nextCursor : undefined;
  } while (cursor && items.length < max);
  return items;
}
