// Charts through ECharts, tree-shaken to what the pages draw. Every chart renders to canvas
// and its tooltips are rich text drawn on the canvas, not HTML: a label like
// `<img src=x onerror=...>` is drawn as those characters (bad-inputs case 20).

import { BarChart, LineChart } from "echarts/charts";
import {
  DatasetComponent,
  GridComponent,
  LegendComponent,
  MarkPointComponent,
  TitleComponent,
  TooltipComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([
  BarChart,
  LineChart,
  DatasetComponent,
  GridComponent,
  LegendComponent,
  MarkPointComponent,
  TitleComponent,
  TooltipComponent,
  CanvasRenderer,
]);

export type Chart = echarts.ECharts;
export type ChartOption = echarts.EChartsCoreOption;

export const PALETTE = ["#1f5fa8", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

/** A chart in `element`, resized with it; the base options make it safe and readable. */
export function chartIn(element: HTMLElement, option: ChartOption): Chart {
  const chart = echarts.init(element, null, { renderer: "canvas" });
  chart.setOption({
    color: PALETTE,
    animation: false,
    // Time axes carry the plant's wall-clock time written as UTC (plantTime.plantClock).
    useUTC: true,
    textStyle: { fontFamily: "system-ui, sans-serif", color: "#1f2933" },
    tooltip: { trigger: "axis", renderMode: "richText", confine: true },
    grid: { left: 56, right: 24, top: 40, bottom: 40, containLabel: true },
    ...option,
  });
  const observer = new ResizeObserver(() => chart.resize());
  observer.observe(element);
  const dispose = chart.dispose.bind(chart);
  chart.dispose = () => {
    observer.disconnect();
    dispose();
  };
  return chart;
}
