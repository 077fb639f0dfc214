// The plant's clock in the browser. The dashboards count days and shifts in the project's
// time zone and write buckets with its UTC offset ("2025-03-10T00:00:00+01:00"); the charts
// show that wall-clock time whatever the viewer's own zone is.

/** Minutes the zone is ahead of UTC at `instant`. */
function offsetMinutes(instant: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(instant));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const wall = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return Math.round((wall - Math.floor(instant / 1000) * 1000) / 60_000);
}

/** The plant's date (YYYY-MM-DD) at `now`. */
export function plantToday(timeZone: string, now: Date = new Date()): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(now);
}

/** `date` plus `days` days (YYYY-MM-DD, calendar arithmetic). */
export function addDays(date: string, days: number): string {
  const [y = 1970, m = 1, d = 1] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** The instant (ISO, UTC) the plant's day `date` began. */
export function plantMidnight(date: string, timeZone: string): string {
  const [y = 1970, m = 1, d = 1] = date.split("-").map(Number);
  const wall = Date.UTC(y, m - 1, d);
  let instant = wall - offsetMinutes(wall, timeZone) * 60_000;
  // Near a daylight-saving change the offset at the guess can differ from the one at midnight.
  const corrected = wall - offsetMinutes(instant, timeZone) * 60_000;
  if (corrected !== instant) instant = corrected;
  return new Date(instant).toISOString();
}

/**
 * A bucket's plant wall-clock time written as if it were UTC: charts drawn with `useUTC`
 * then label it with the plant's hours and dates.
 */
export function plantClock(bucket: string): string {
  return `${bucket.slice(0, 19)}Z`;
}

export interface Shift {
  name: string;
  start: number;
}

/** "A 6, B 14, C 22" as shifts; a message saying what is wrong otherwise. */
export function parseShifts(text: string): Shift[] | string {
  const shifts: Shift[] = [];
  for (const item of text.split(",").map((part) => part.trim()).filter(Boolean)) {
    const match = /^(.+?)\s+(\d{1,2})(?::00)?$/.exec(item);
    if (!match || Number(match[2]) > 23) return `"${item}" is not a shift: write a name and the hour it starts (0-23), e.g. "Night 22".`;
    shifts.push({ name: match[1] ?? "", start: Number(match[2]) });
  }
  return shifts.length ? shifts : "Give at least one shift.";
}

export function formatShifts(shifts: Shift[]): string {
  return shifts.map((shift) => `${shift.name} ${shift.start}`).join(", ");
}
