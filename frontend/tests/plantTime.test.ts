import { describe, expect, it } from "vitest";
import { addDays, formatShifts, parseShifts, plantClock, plantMidnight, plantToday } from "../src/plantTime";

describe("the plant's clock", () => {
  it("finds when a plant's day began, across daylight-saving changes", () => {
    expect(plantMidnight("2025-03-10", "Europe/Berlin")).toBe("2025-03-09T23:00:00.000Z");
    expect(plantMidnight("2025-07-01", "Europe/Berlin")).toBe("2025-06-30T22:00:00.000Z");
    // New York's 23-hour day (clocks spring forward at 02:00) began in winter time.
    expect(plantMidnight("2025-03-09", "America/New_York")).toBe("2025-03-09T05:00:00.000Z");
    expect(plantMidnight("2025-03-10", "America/New_York")).toBe("2025-03-10T04:00:00.000Z");
    expect(plantMidnight("2025-03-10", "Asia/Kolkata")).toBe("2025-03-09T18:30:00.000Z");
    expect(plantMidnight("2025-03-10", "UTC")).toBe("2025-03-10T00:00:00.000Z");
  });

  it("knows the plant's date, which may differ from the viewer's", () => {
    const now = new Date("2025-03-10T23:30:00Z");
    expect(plantToday("UTC", now)).toBe("2025-03-10");
    expect(plantToday("Europe/Berlin", now)).toBe("2025-03-11");
    expect(plantToday("America/Los_Angeles", now)).toBe("2025-03-10");
  });

  it("adds calendar days across month ends", () => {
    expect(addDays("2025-02-28", 1)).toBe("2025-03-01");
    expect(addDays("2025-03-01", -29)).toBe("2025-01-31");
  });

  it("draws buckets at the plant's wall-clock time", () => {
    expect(plantClock("2025-03-10T00:00:00+01:00")).toBe("2025-03-10T00:00:00Z");
    expect(plantClock("2025-03-10T06:00:00Z")).toBe("2025-03-10T06:00:00Z");
  });
});

describe("shifts as a manager types them", () => {
  it("reads names with the hour each shift starts", () => {
    expect(parseShifts("Early 6, Late 14:00 , Night shift 22")).toEqual([
      { name: "Early", start: 6 },
      { name: "Late", start: 14 },
      { name: "Night shift", start: 22 },
    ]);
    expect(formatShifts([{ name: "A", start: 6 }, { name: "B", start: 18 }])).toBe("A 6, B 18");
  });

  it("says what is wrong with a shift it cannot read", () => {
    expect(parseShifts("A 24")).toMatch(/"A 24" is not a shift/);
    expect(parseShifts("Day")).toMatch(/"Day" is not a shift/);
    expect(parseShifts(" , ")).toBe("Give at least one shift.");
  });
});
