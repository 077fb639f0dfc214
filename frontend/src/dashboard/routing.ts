/**
 * What the project's routing thresholds were fitted on, in words, for the dashboard's
 * workload panel (see inspection.services.routing.calibration_run).
 */

export interface RoutingCalibration {
  parts: number;
  t_pass: number;
  expected_review_rate: number;
  sample_since: string | null;
}

/** When ``iso`` was, on the plant's clock. */
export function plantTime(iso: string, timeZone: string): string {
  return new Date(iso).toLocaleString("en-GB", { timeZone, dateStyle: "medium", timeStyle: "short" });
}

export function describeSample(calibration: RoutingCalibration | null, timeZone: string): string {
  if (!calibration) return "No thresholds fitted yet: every part goes to people until a model is deployed and calibrated.";
  const share = `${Math.round(calibration.expected_review_rate * 1000) / 10} %`;
  const fitted =
    calibration.t_pass < 0
      ? `too few to pass any part yet, so the models' passes go to people`
      : `about ${share} of parts go to people`;
  if (calibration.sample_since) {
    return (
      `The latest audited parts showed the models breaking a target (the line changed under them): ` +
      `thresholds fitted on the ${calibration.parts} parts decided since ${plantTime(calibration.sample_since, timeZone)}; ${fitted}.`
    );
  }
  return `Thresholds fitted on the latest ${calibration.parts} parts that came to people whatever their scores (the random sample, and every part before a model decided); ${fitted}.`;
}
