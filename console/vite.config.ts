import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Served by the aurum binary under /console (assets under /console/assets). `npx vite`
// serves the sources with hot reload and passes /graphql (WebSocket included) to the server
// at AURUM_DEV_API (default: scripts/serve's address).
const api = process.env.AURUM_DEV_API || 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/console/',
  plugins: [react()],
  server: {
    host: '127.0.0.1',
    proxy: {
      '/graphql': { target: api, ws: true, changeOrigin: false },
      '/ready': { target: api },
      '/health': { target: api },
    },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
});
