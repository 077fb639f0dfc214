import { defineConfig } from "vitest/config";

// Built files go where Django's staticfiles finder looks (frontend/static/frontend/app);
// the manifest tells the Django view which hashed files to load.
export default defineConfig({
  base: "/static/frontend/app/",
  build: {
    outDir: "static/frontend/app",
    emptyOutDir: true,
    manifest: "manifest.json",
    sourcemap: true,
    chunkSizeWarningLimit: 1200, // ECharts is large; it is split into its own chunk
    rollupOptions: {
      input: "src/main.ts",
      output: {
        manualChunks(id: string) {
          return id.includes("node_modules/echarts") || id.includes("node_modules/zrender") ? "charts" : undefined;
        },
      },
    },
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
  },
});
